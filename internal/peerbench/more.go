package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Sizes of the session and tunnel measurements.
const (
	sessionsN    = 1000
	streamsN     = 10000
	idleTunnelsN = 16
)

// recoveryRow is how long a target took to serve again after a crash of
// its connector (frpc) and of its edge (frps).
type recoveryRow struct {
	name            string
	connector, edge time.Duration
	err             error
}

// moreRows are the measurements beyond calls: sessions and streams,
// restarts and idle tunnels.
type moreRows struct {
	sessions []sessionsRow
	streams  sessionsRow
	recovery []recoveryRow
	tunnels  []tunnelsRow
}

// measureMore measures, in this order (each step may disturb the next):
// open sessions on Airlock and frp's HTTP mode; 10,000 streams on
// Airlock; restarts of Airlock's connector and edge and of frpc and frps;
// idle tunnels.
func measureMore(ctx context.Context, air *airlockRun, frp *frpRun, srv *sessionServer,
	airT *target, plain *http.Client) moreRows {
	var m moreRows
	airSessions := &sessionClient{client: air.sessions.HTTPClient(), url: air.url("sessions")}
	m.sessions = append(m.sessions,
		measureSessions(ctx, "Airlock", airSessions, airT.pids, srv, sessionsN))
	var frpTargets []*target
	if frp != nil {
		frpTargets = frp.targets(plain)
		c := &sessionClient{client: plain, url: frp.vhostURL(), host: frpSessionsHost}
		m.sessions = append(m.sessions, measureSessions(ctx, "frp QUIC, HTTP mode", c,
			frpTargets[0].pids, srv, sessionsN))
	}
	m.streams = measureSessions(ctx, "Airlock", airSessions, airT.pids, srv, streamsN)

	m.recovery = restarts(ctx, []*target{airT},
		restart{func() error { return kill(air.conns[0]) }, air.startMain},
		restart{func() error { return kill(air.edge) }, air.startEdge})
	if frp != nil {
		m.recovery = append(m.recovery, restarts(ctx, frpTargets,
			restart{func() error { return kill(frp.client) }, frp.startClient},
			restart{func() error { return kill(frp.server) }, frp.startServer})...)
	}

	edgePID := func() []int { return []int{pid(air.edge)} }
	m.tunnels = append(m.tunnels, measureIdleTunnels(ctx, "Airlock", edgePID,
		idleTunnelsN, air.enrollIdle, air.startIdle, func() []int { return pids(air.conns[1:]) }))
	if frp != nil {
		frpsPID := func() []int { return []int{pid(frp.server)} }
		m.tunnels = append(m.tunnels, measureIdleTunnels(ctx, "frp QUIC", frpsPID,
			idleTunnelsN, frp.prepareIdle, frp.startIdle, func() []int { return pids(frp.idle) }))
	}
	return m
}

// restart crashes one process of a target and starts it again.
type restart struct {
	crash func() error
	start func(context.Context) error
}

// restarts measures the first good call through each of targets after
// their connector (frpc) restarts, then after their edge (frps) does.
func restarts(ctx context.Context, targets []*target, connector, edge restart) []recoveryRow {
	rows := make([]recoveryRow, len(targets))
	for i, t := range targets {
		rows[i].name = t.name
	}
	took, err := firstGoodCalls(ctx, targets, connector)
	for i := range rows {
		rows[i].err = err
		if err == nil {
			rows[i].connector = took[i]
		}
	}
	if err != nil {
		return rows
	}
	took, err = firstGoodCalls(ctx, targets, edge)
	for i := range rows {
		rows[i].err = err
		if err == nil {
			rows[i].edge = took[i]
		}
	}
	return rows
}

func (m moreRows) rows() int {
	return len(m.sessions) + 1 + len(m.recovery) + len(m.tunnels)
}

func (m moreRows) failed() int {
	n := 0
	for _, r := range m.sessions {
		if !r.ok() {
			n++
		}
	}
	if !m.streams.ok() {
		n++
	}
	for _, r := range m.recovery {
		if r.err != nil {
			n++
		}
	}
	for _, r := range m.tunnels {
		if r.err != nil {
			n++
		}
	}
	return n
}

func (m moreRows) print() {
	fmt.Printf("\nOpen sessions (%d, each initialized with its GET stream open, 64 opened at a time)\n", sessionsN)
	fmt.Printf("%-24s %12s %16s %8s\n", "target", "to open all", "memory/session*", "heard")
	for _, r := range m.sessions {
		r.print()
	}
	fmt.Println("* growth of the private resident memory (RssAnon) of the processes that carry the sessions " +
		"(edge and connector; frps and frpc), divided by the sessions.")
	s := m.streams
	fmt.Printf("\n%d concurrent SSE streams through one Airlock edge:\n", s.n)
	s.print()

	fmt.Println("\nRestart: time from the start of a crashed (SIGKILL) process to the first good call")
	fmt.Printf("%-24s %18s %18s\n", "target", "connector (frpc)", "edge (frps)")
	for _, r := range m.recovery {
		if r.err != nil {
			fmt.Printf("%-24s FAILED: %v\n", r.name, r.err)
			continue
		}
		fmt.Printf("%-24s %16.0fms %16.0fms\n", r.name, millis(r.connector), millis(r.edge))
	}

	fmt.Printf("\nIdle tunnels (%d more, each its own connector or frpc process; private resident memory)\n",
		idleTunnelsN)
	fmt.Printf("%-24s %26s %22s\n", "target", "edge (frps) memory/tunnel", "connector (frpc) memory")
	for _, r := range m.tunnels {
		if r.err != nil {
			fmt.Printf("%-24s FAILED: %v\n", r.name, r.err)
			continue
		}
		perTunnel, client := float64(r.perTunnel)/1024, float64(r.client)/(1<<20)
		fmt.Printf("%-24s %23.0fKiB %19.1fMiB\n", r.name, perTunnel, client)
	}
}

func (r sessionsRow) print() {
	status := fmt.Sprintf("%d/%d", r.heard, r.n)
	if r.failed > 0 {
		status += fmt.Sprintf(", %d failed to open, first: %v", r.failed, r.firstErr)
	}
	perSession := float64(r.rss) / float64(r.n) / 1024
	fmt.Printf("%-24s %11.1fs %13.1fKiB %8s\n", r.name, r.open.Seconds(), perSession, status)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
