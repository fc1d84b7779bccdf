package edge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/internal/faultnet"
)

// faultyTunnel starts an edge serving "demo" through one connector whose
// QUIC traffic goes through a fault proxy.
func faultyTunnel(t *testing.T, seed uint64) (*env, *edge.Edge, *faultnet.UDPProxy, *upstream) {
	t.Helper()
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	p, err := faultnet.NewUDPProxy(e.TunnelAddr().String(), seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	up := v.startUpstream(true) // stateless: every echo stands alone
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, func(c *connector.Config) {
		c.Edges = []string{p.Addr()}
		c.ServerName = "127.0.0.1"
	})
	return v, e, p, up
}

// TestFaultPacketLoss: with 5 % of the tunnel's datagrams lost each way,
// at least 99.9 % of the requests succeed (QUIC retransmits; the agent
// sees nothing of it).
func TestFaultPacketLoss(t *testing.T) {
	v, e, p, _ := faultyTunnel(t, 7)
	p.Set(faultnet.Up, faultnet.Faults{Drop: 0.05})
	p.Set(faultnet.Down, faultnet.Faults{Drop: 0.05})
	client := httpClient(t, v.agentTLS("alice"))
	lr := startLoad(t, client, mcpURL(e, "demo"), 8)
	lr.awaitMore(t, 1000)
	results := lr.all()
	failed := 0
	for _, r := range results {
		if !r.ok() {
			failed++
			t.Logf("failed: status %d code %d err %v", r.status, r.code, r.err)
		}
	}
	_, droppedUp := p.Counts(faultnet.Up)
	_, droppedDown := p.Counts(faultnet.Down)
	t.Logf("%d requests, %d failed; datagrams dropped: %d up, %d down",
		len(results), failed, droppedUp, droppedDown)
	if droppedUp == 0 || droppedDown == 0 {
		t.Fatal("the proxy dropped nothing: the test did not test loss")
	}
	if failed*1000 > len(results) {
		t.Errorf("%d of %d requests failed with 5%% loss; at most 0.1%% may", failed, len(results))
	}
}

// TestFaultBlackout: a 2 s blackout of the tunnel, shorter than its idle
// timeout, loses nothing: requests made during it wait and then succeed.
func TestFaultBlackout(t *testing.T) {
	v, e, p, _ := faultyTunnel(t, 8)
	client := httpClient(t, v.agentTLS("alice"))
	lr := startLoad(t, client, mcpURL(e, "demo"), 4)
	lr.awaitMore(t, 50)
	p.Blackout(2 * time.Second)
	start := time.Now()
	waitFor(t, "the blackout to end", func() bool { return time.Since(start) > 2*time.Second })
	lr.awaitMore(t, 200)
	results := lr.all()
	held := 0
	for _, r := range results {
		if !r.ok() {
			t.Errorf("request failed across the blackout: status %d code %d err %v",
				r.status, r.code, r.err)
		}
		// In flight across most of the blackout: it waited and got through.
		if r.start.Before(start.Add(time.Second)) && r.end.After(start.Add(1500*time.Millisecond)) {
			held++
		}
	}
	if held == 0 {
		t.Error("no request was in flight across the blackout: the test tested nothing")
	}
	if !hasTunnel(e, "c1") {
		t.Error("the tunnel did not survive a 2 s blackout")
	}
	t.Logf("%d requests, %d of them held by the blackout and answered after it", len(results), held)
}

// TestFaultSilentPartition: when the tunnel goes silent for good (no
// close, no reset: a cut cable), the edge drops the connector within 5 s:
// it misses six of the connector's heartbeats (3 s at the default
// keep-alive), well before QUIC's idle timeout would end the connection.
func TestFaultSilentPartition(t *testing.T) {
	_, e, p, _ := faultyTunnel(t, 9)
	p.Blackout(time.Hour)
	cut := time.Now()
	waitFor(t, "the edge to notice the partition", func() bool { return !hasTunnel(e, "c1") })
	took := time.Since(cut)
	t.Logf("partition noticed after %v", took.Round(time.Millisecond))
	// The silence limit is 3 s; the figure, 5 s, leaves room for
	// a busy machine.
	if took > 5*time.Second {
		t.Errorf("the partition was noticed after %v; want within 5 s", took)
	}
}

// TestFaultConnectorKilledWithSecondUp: one of two connectors is killed
// under load (its datagrams stop, as in a crash). Requests in flight on
// it fail when the edge drops the tunnel (six missed heartbeats); no
// request started later than 1 s after the kill fails. Two things keep
// new requests off the dead connector before the drop: the least-busy
// choice (its stuck requests count against it) and, for a connector
// whose rivals are busy too, skipping one that missed two heartbeats.
func TestFaultConnectorKilledWithSecondUp(t *testing.T) {
	v, e, rcs, _ := twoConnectors(t, true)
	client := httpClient(t, v.agentTLS("alice"))
	lr := startLoad(t, client, mcpURL(e, "demo"), 48)
	lr.awaitMore(t, 200)
	killed := time.Now()
	rcs[0].kill()
	waitFor(t, "4 s of load after the kill", func() bool { return time.Since(killed) > 4*time.Second })
	results := lr.all()
	late, failedEarly := 0, 0
	for _, r := range results {
		if !r.start.After(killed.Add(time.Second)) {
			if !r.ok() {
				failedEarly++
			}
			continue
		}
		late++
		if !r.ok() {
			t.Errorf("request started %v after the kill failed: status %d code %d err %v",
				r.start.Sub(killed).Round(time.Millisecond), r.status, r.code, r.err)
		}
	}
	if late == 0 {
		t.Fatal("no request started more than 1 s after the kill: the test tested nothing")
	}
	t.Logf("%d requests started over 1 s after the kill, all answered; %d earlier ones failed",
		late, failedEarly)
}

// TestFaultEdgeShutdownFinishesInFlight: when the edge is told to stop
// (SIGTERM runs Shutdown with the grace period), a streaming request in
// flight finishes whole, every event and its answer, and Shutdown returns
// once it has; requests that come after it are not taken.
func TestFaultEdgeShutdownFinishesInFlight(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	count := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"count",` +
		`"arguments":{"n":5,"delay_ms":200},"_meta":{"progressToken":"p"}}}`
	type answer struct {
		body []byte
		err  error
		end  time.Time
	}
	done := make(chan answer, 1)
	go func() {
		_, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), count, nil)
		done <- answer{body, err, time.Now()}
	}()
	waitFor(t, "the call to reach the upstream", func() bool { return up.rec.requests.Load() > 0 })
	stopped := make(chan time.Time, 1)
	go func() {
		shutdownEdge(t, e)
		stopped <- time.Now()
	}()
	a := <-done
	if a.err != nil || strings.Count(string(a.body), "notifications/progress") != 5 ||
		!strings.Contains(string(a.body), "counted to 5") {
		t.Fatalf("the stream in flight during shutdown: %v\n%s", a.err, a.body)
	}
	end := <-stopped
	if end.Before(a.end) {
		t.Error("Shutdown returned before the request in flight had finished")
	}
	// Requests after the shutdown are not taken.
	if resp, _, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(2, "late"), nil); err == nil {
		t.Errorf("a request after shutdown was answered %d", resp.StatusCode)
	}
}

// TestFaultRestartedConnectorServesAtOnce: the only connector of a
// resource crashes and a new process starts; agents are served again
// within 3 s of its start (it dials, is accepted, and the crashed one's
// tunnel no longer stands in the way).
func TestFaultRestartedConnectorServesAtOnce(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	up := v.startUpstream(true)
	rc := v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), 1); !r.ok() {
		t.Fatalf("before the crash: %+v", r)
	}
	rc.kill()
	started := time.Now()
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	for i := 2; ; i++ {
		if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), i); r.ok() {
			break
		}
		if time.Since(started) > 10*time.Second {
			t.Fatal("the restarted connector served nothing within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(started)
	t.Logf("served again %v after the new connector started", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("served again only after %v; want within 3 s", took)
	}
}
