package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// result is the outcome of one request of a load run.
type result struct {
	start, end time.Time
	status     int
	code       int // JSON-RPC error code, when the answer was an error
	err        error
}

func (r result) ok() bool { return r.err == nil && r.status == http.StatusOK && r.code == 0 }

// loadRun sends echo calls from several workers until stopped, or until
// maxRequests or maxTime is reached, whichever comes first.
type loadRun struct {
	mu      sync.Mutex
	results []result
	done    atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

const (
	maxRequests = 20000
	maxTime     = 40 * time.Second
)

func startLoad(t *testing.T, client *http.Client, url string, workers int) *loadRun {
	t.Helper()
	ctx := testContext(t)
	lr := &loadRun{stop: make(chan struct{})}
	deadline := time.Now().Add(maxTime)
	var next atomic.Int64
	for range workers {
		lr.wg.Go(func() {
			for {
				select {
				case <-lr.stop:
					return
				default:
				}
				i := next.Add(1)
				if i > maxRequests || time.Now().After(deadline) {
					return
				}
				lr.record(oneEcho(t, ctx, client, url, int(i)))
			}
		})
	}
	t.Cleanup(lr.finish)
	return lr
}

func oneEcho(t *testing.T, ctx context.Context, client *http.Client, url string, i int) result {
	want := fmt.Sprintf("load-%d", i)
	r := result{start: time.Now()}
	resp, body, err := rpc(t, ctx, client, url, echoCall(i, want), nil)
	r.end = time.Now()
	if err != nil {
		r.err = err
		return r
	}
	r.status = resp.StatusCode
	var msg struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Unmarshal(body, &msg) == nil && msg.Error != nil {
		r.code = msg.Error.Code
	} else if r.status == http.StatusOK && !strings.Contains(string(body), `"text":"`+want+`"`) {
		r.err = fmt.Errorf("answer lacks %q: %s", want, body)
	}
	return r
}

func (lr *loadRun) record(r result) {
	lr.mu.Lock()
	lr.results = append(lr.results, r)
	lr.mu.Unlock()
	lr.done.Add(1)
}

// awaitMore waits until n more requests have completed.
func (lr *loadRun) awaitMore(t *testing.T, n int64) {
	t.Helper()
	target := lr.done.Load() + n
	waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return lr.done.Load() >= target })
}

func (lr *loadRun) finish() {
	select {
	case <-lr.stop:
	default:
		close(lr.stop)
	}
	lr.wg.Wait()
}

func (lr *loadRun) all() []result {
	lr.finish()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return append([]result(nil), lr.results...)
}

// twoConnectors starts an edge serving "demo" through c1 and c2, each in
// front of an upstream of its own, so the test can tell who served what.
func twoConnectors(t *testing.T, stateless bool) (*env, *edge.Edge, [2]*runningConnector, [2]*upstream) {
	t.Helper()
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1", "c2"}}}, nil)
	var rcs [2]*runningConnector
	var ups [2]*upstream
	for i, name := range []string{"c1", "c2"} {
		ups[i] = v.startUpstream(stateless)
		rcs[i] = v.startConnector(e, name, []connector.Resource{{Name: "demo", URL: ups[i].url}}, nil)
	}
	return v, e, rcs, ups
}

func hasTunnel(e *edge.Edge, connectorName string) bool {
	for _, ti := range e.Tunnels() {
		if ti.Connector == connectorName {
			return true
		}
	}
	return false
}

func TestConnectorKilledUnderLoad(t *testing.T) {
	v, e, rcs, ups := twoConnectors(t, true)
	client := httpClient(t, v.agentTLS("alice"))

	lr := startLoad(t, client, mcpURL(e, "demo"), 8)
	lr.awaitMore(t, 200)
	if ups[0].rec.requests.Load() == 0 || ups[1].rec.requests.Load() == 0 {
		t.Fatalf("load is not spread: upstream requests %d and %d", ups[0].rec.requests.Load(), ups[1].rec.requests.Load())
	}

	killed := time.Now()
	rcs[0].kill()
	waitFor(t, "the edge to notice the killed connector", func() bool { return !hasTunnel(e, "c1") })
	noticed := time.Now()
	servedByKilled := ups[0].rec.requests.Load()
	lr.awaitMore(t, 500)
	results := lr.all()
	t.Logf("edge noticed the kill after %v", noticed.Sub(killed).Round(time.Millisecond))

	var failedBefore int
	for _, r := range results {
		if r.ok() {
			continue
		}
		if r.start.After(noticed) {
			t.Errorf("request started %v after the edge noticed failed: status %d code %d err %v",
				r.start.Sub(noticed), r.status, r.code, r.err)
			continue
		}
		failedBefore++
		// In-flight requests on the killed connector end with a clear
		// error: a 502 from the edge when no answer had begun, else the
		// agent's HTTP/2 stream is reset so that a cut answer is never
		// taken for a whole one.
		cut := r.err != nil && strings.Contains(r.err.Error(), "INTERNAL_ERROR")
		if !cut && (r.status != http.StatusBadGateway || r.code != airmcp.CodeUpstreamFailed) {
			t.Errorf("request cut by the kill: status %d code %d err %v; want 502 with code %d or a reset stream",
				r.status, r.code, r.err, airmcp.CodeUpstreamFailed)
		}
		if r.end.After(noticed.Add(2 * time.Second)) {
			t.Errorf("request cut by the kill ended %v after the edge noticed", r.end.Sub(noticed))
		}
	}
	t.Logf("%d requests, %d failed before the edge noticed", len(results), failedBefore)
	if got := ups[0].rec.requests.Load(); got != servedByKilled {
		t.Errorf("the killed connector's upstream saw %d requests after the kill was noticed", got-servedByKilled)
	}

	// A restarted connector (a new process under the same name) serves
	// again.
	restarted := v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: ups[0].url}}, nil)
	if restarted.c.Instance() == rcs[0].c.Instance() {
		t.Fatal("the restarted connector reused the old instance ID")
	}
	ctx := testContext(t)
	before := ups[0].rec.requests.Load()
	for i := range 40 {
		if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), i); !r.ok() {
			t.Fatalf("request after restart: status %d code %d err %v", r.status, r.code, r.err)
		}
	}
	if ups[0].rec.requests.Load() == before {
		t.Error("the restarted connector served none of 40 requests")
	}
}

func TestEdgeRestartConnectorsReturn(t *testing.T) {
	v := newEnv(t)
	resources := []edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}
	e := v.startEdge(resources, nil)
	addr := e.Addr().String()
	up := v.startUpstream(true)
	rc := v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	shutdownEdge(t, e)
	waitFor(t, "the connector to see the edge go", func() bool { return rc.c.Connected() == 0 })

	e2 := v.startEdge(resources, func(c *edge.Config) { c.Listen = addr })
	waitFor(t, "the connector to reconnect to the new edge", func() bool { return rc.c.Connected() == 2 && len(e2.Tunnels()) == 2 })
	if r := oneEcho(t, ctx, client, mcpURL(e2, "demo"), 1); !r.ok() {
		t.Fatalf("request through the restarted edge: status %d code %d err %v", r.status, r.code, r.err)
	}
}

// TestEdgeCrashNoticedAtOnce restarts an edge that died without closing
// its tunnels. The idle timeout is set far above the test's patience, so
// only the stateless reset (same key, drawn by the connector's heartbeat)
// can bring the connector back in time.
func TestEdgeCrashNoticedAtOnce(t *testing.T) {
	v := newEnv(t)
	resources := []edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}
	slowIdle := func(q *tunnel.QUICSettings) { q.IdleTimeout, q.KeepAlive = time.Minute, time.Second }
	e := v.startEdge(resources, func(c *edge.Config) { slowIdle(&c.QUIC) })
	addr := e.Addr().String()
	up := v.startUpstream(true)
	rc := v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}},
		func(c *connector.Config) { slowIdle(&c.QUIC) })
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	// Let the tunnels fall quiet, so that only keep-alives would cross
	// them without the heartbeat.
	time.Sleep(3 * time.Second)
	edge.Crash(e)
	e2 := v.startEdge(resources, func(c *edge.Config) { c.Listen = addr; slowIdle(&c.QUIC) })
	deadline := time.Now().Add(10 * time.Second)
	for len(e2.Tunnels()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("connector not back 10 s after the edge restarted (idle timeout 1m): %d tunnels", len(e2.Tunnels()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := oneEcho(t, ctx, client, mcpURL(e2, "demo"), 1); !r.ok() {
		t.Fatalf("request through the restarted edge: status %d code %d err %v", r.status, r.code, r.err)
	}
	if n := rc.c.Connected(); n != 2 {
		t.Errorf("connector has %d tunnels, want 2", n)
	}
}

func TestConnectorDrains(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1", "c2"}}}, nil)
	up1, up2 := v.startUpstream(true), v.startUpstream(true)
	rc1 := v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up1.url}}, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	// A slow call is under way on c1 when it is asked to stop.
	slow := make(chan result, 1)
	go func() {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"count","arguments":{"n":5,"delay_ms":200}}}`
		resp, data, err := rpc(t, ctx, client, mcpURL(e, "demo"), body, nil)
		r := result{err: err}
		if err == nil {
			r.status = resp.StatusCode
			if !strings.Contains(string(data), "counted to 5") {
				r.err = fmt.Errorf("answer %s", data)
			}
		}
		slow <- r
	}()
	waitFor(t, "the slow call to reach c1", func() bool { return rc1.c.InFlight() == 1 })
	v.startConnector(e, "c2", []connector.Resource{{Name: "demo", URL: up2.url}}, nil)

	stopped := make(chan struct{})
	go func() { rc1.stop(); close(stopped) }()
	waitFor(t, "the edge to see c1 draining", func() bool {
		for _, ti := range e.Tunnels() {
			if ti.Connector == "c1" && !ti.Draining {
				return false
			}
		}
		return true
	})
	served := up1.rec.requests.Load()
	for i := range 20 {
		if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), i); !r.ok() {
			t.Fatalf("request during drain: status %d code %d err %v", r.status, r.code, r.err)
		}
	}
	if got := up1.rec.requests.Load(); got != served {
		t.Errorf("a draining connector got %d new requests", got-served)
	}
	if r := <-slow; !r.ok() {
		t.Errorf("the call in flight during the drain: status %d err %v", r.status, r.err)
	}
	<-stopped
	waitFor(t, "the edge to drop the stopped connector", func() bool { return !hasTunnel(e, "c1") })
}

func TestSessionsStayOnTheirConnector(t *testing.T) {
	v, e, rcs, ups := twoConnectors(t, false)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	cs := connectMCP(t, client, mcpURL(e, "demo"), nil)

	// Notes live in one upstream's memory: reading them back works only
	// if every request of the session reaches the same one.
	for i := range 10 {
		title := fmt.Sprintf("n%d", i)
		call(t, cs, "add_note", map[string]any{"title": title, "body": "b"})
		call(t, cs, "read_note", map[string]any{"title": title})
	}
	// The client's session-less discovery probe may go anywhere; every
	// request that names the session must reach one upstream.
	var bySession [2]int
	for i, u := range ups {
		for _, h := range u.rec.seen() {
			if h.Get("Mcp-Session-Id") == cs.ID() {
				bySession[i]++
			}
		}
	}
	pinned := 0
	if bySession[1] > 0 {
		pinned = 1
	}
	if bySession[1-pinned] != 0 || bySession[pinned] < 20 {
		t.Fatalf("the session's requests reached both upstreams: %d and %d", bySession[0], bySession[1])
	}

	// When the pinned connector is gone the session cannot move: the edge
	// answers that it is not found, and a new session works.
	rcs[pinned].kill()
	waitFor(t, "the edge to notice the killed connector", func() bool { return !hasTunnel(e, fmt.Sprintf("c%d", pinned+1)) })
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_notes"})
	if err == nil {
		t.Fatal("a session whose connector is gone still answered")
	}
	resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`,
		http.Header{"Mcp-Session-Id": {cs.ID()}, "Mcp-Protocol-Version": {"2025-11-25"}})
	if err != nil {
		t.Fatal(err)
	}
	checkRPCError(t, resp, body, http.StatusNotFound, airmcp.CodeSessionNotFound)
	fresh := connectMCP(t, client, mcpURL(e, "demo"), nil)
	if _, err := fresh.ListTools(ctx, nil); err != nil {
		t.Fatalf("a new session after the failover: %v", err)
	}
}
