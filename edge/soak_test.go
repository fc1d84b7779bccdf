package edge_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

var soak = flag.Duration("soak", 0, "run TestSoak for this long (make soak)")

// soakPolicy allows everything but the tool "forbidden".
const soakPolicy = `package airlock.authz

default allow := false

allow if not input.mcp.tool == "forbidden"

reason := "forbidden is forbidden" if input.mcp.tool == "forbidden"
`

// witness sits in front of an upstream and remembers, for every echo call
// that reaches it, the caller's text and the agent the edge's identity
// assertion names.
type witness struct {
	next http.Handler
	name string
	mu   sync.Mutex
	seen map[string][]string // echo text -> agents, one per arrival
	tool map[string]int      // tools/call arrivals by tool
}

func (w *witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name      string `json:"name"`
			Arguments struct {
				Text string `json:"text"`
			} `json:"arguments"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" {
		agent := token.AssertedAgent(r.Header.Get(token.AssertionHeader))
		w.mu.Lock()
		w.tool[m.Params.Name]++
		if m.Params.Name == "echo" {
			w.seen[m.Params.Arguments.Text] = append(w.seen[m.Params.Arguments.Text], agent)
		}
		w.mu.Unlock()
	}
	w.next.ServeHTTP(rw, r)
}

// TestSoak drives 64 agents for -soak (make soak; skipped otherwise)
// through two connectors with a mix of allowed calls, lists and denied
// calls. Every call carries a unique text that the upstream echoes, and a
// witness in front of each upstream records which agent the edge said
// sent it, so that lost, duplicated, misrouted and wrongly decided
// requests are counted exactly: all must be zero. Goroutines and heap
// must come back to their level before the load.
func TestSoak(t *testing.T) {
	if *soak <= 0 {
		t.Skip("run with -soak=DURATION (make soak)")
	}
	v := newEnv(t)
	writePolicy(t, v.dataDir, soakPolicy)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1", "c2"}}}, nil)
	var witnesses []*witness
	var recorders []*recorder
	var fronts []*httptest.Server
	for _, name := range []string{"c1", "c2"} {
		up := v.startUpstream(true)
		w := &witness{next: up.rec, name: name, seen: map[string][]string{}, tool: map[string]int{}}
		witnesses = append(witnesses, w)
		recorders = append(recorders, up.rec)
		front := httptest.NewServer(w)
		t.Cleanup(front.Close)
		fronts = append(fronts, front)
		v.startConnector(e, name, []connector.Resource{{Name: "demo", URL: front.URL + "/mcp"}}, nil)
	}
	const agents = 64
	clients := make([]*http.Client, agents)
	for i := range clients {
		clients[i] = httpClient(t, v.agentTLS(fmt.Sprintf("soak-%02d", i)))
	}
	url := mcpURL(e, "demo")
	ctx, cancel := context.WithTimeout(t.Context(), *soak+2*time.Minute)
	defer cancel()
	// Idle pooled connections come and go with the load's timing; what
	// is compared is everything else.
	closeIdle := func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		for _, f := range fronts {
			f.CloseClientConnections()
		}
		time.Sleep(500 * time.Millisecond) // let the closed connections' goroutines end
		runtime.GC()
	}
	// Warm up with the same concurrency, so that connection pools have
	// grown to their working size, then take the baseline: what must come
	// back is that level, not the level of an idle edge.
	var warm sync.WaitGroup
	warmUntil := time.Now().Add(2 * time.Second)
	for _, c := range clients {
		warm.Go(func() {
			for time.Now().Before(warmUntil) {
				rpc(t, ctx, c, url, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
			}
		})
	}
	warm.Wait()
	closeIdle()
	baseGoroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Every request ends in exactly one outcome; "ok" is the only good one.
	const (
		ok            = "ok"
		failed        = "failed"          // no answer: the request errored
		lost          = "lost"            // answered or not, it never reached the upstream
		duplicated    = "duplicated"      // it reached the upstream more than once
		misrouted     = "misrouted"       // the upstream saw another agent, or the answer was another's
		wrongDecision = "wrongly decided" // allowed and refused, or denied and answered
	)
	type echoSent struct{ agent, outcome string } // outcome as far as the agent saw
	var mu sync.Mutex
	outcomes := map[string]int{}
	echoes := map[string]echoSent{} // echo text -> who sent it, what came back
	var seq atomic.Int64
	deadline := time.Now().Add(*soak)
	var wg sync.WaitGroup
	for i, client := range clients {
		agent := certs.Identity{Domain: certs.DefaultTrustDomain, Kind: certs.KindAgent,
			Name: fmt.Sprintf("soak-%02d", i)}.String()
		wg.Go(func() {
			mine := map[string]int{}
			for n := 0; time.Now().Before(deadline) && n < 1_000_000; n++ {
				id := seq.Add(1)
				switch {
				case id%7 == 0: // denied
					resp, body, err := rpc(t, ctx, client, url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,`+
						`"method":"tools/call","params":{"name":"forbidden","arguments":{}}}`, id), nil)
					switch {
					case err != nil:
						mine[failed]++
					case resp.StatusCode != http.StatusOK ||
						!strings.Contains(string(body), fmt.Sprintf(`"code":%d`, airmcp.CodeDenied)):
						mine[wrongDecision]++
					default:
						mine[ok]++
					}
				case id%7 == 1: // a list
					resp, body, err := rpc(t, ctx, client, url,
						fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, id), nil)
					switch {
					case err != nil:
						mine[failed]++
					case resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"echo"`):
						mine[wrongDecision]++
					default:
						mine[ok]++
					}
				default: // an allowed call with a unique text
					text := fmt.Sprintf("soak-%d", id)
					resp, body, err := rpc(t, ctx, client, url, echoCall(int(id), text), nil)
					outcome := ok
					switch {
					case err != nil:
						outcome = failed
					case resp.StatusCode != http.StatusOK:
						outcome = wrongDecision
					case !strings.Contains(string(body), `"text":"`+text+`"`):
						outcome = misrouted
					}
					mu.Lock()
					echoes[text] = echoSent{agent, outcome}
					mu.Unlock()
				}
			}
			mu.Lock()
			for k, n := range mine {
				outcomes[k] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()

	arrivals := map[string][]string{}
	forbiddenReached := 0
	for _, w := range witnesses {
		w.mu.Lock()
		for text, who := range w.seen {
			arrivals[text] = append(arrivals[text], who...)
		}
		forbiddenReached += w.tool["forbidden"]
		w.mu.Unlock()
	}
	// A denied call that reached an upstream was decided wrongly, though
	// its agent saw a denial: move it from ok.
	outcomes[ok] -= forbiddenReached
	outcomes[wrongDecision] += forbiddenReached
	for text, sent := range echoes {
		who := arrivals[text]
		outcome := sent.outcome
		switch {
		case outcome != ok:
		case len(who) == 0:
			outcome = lost
		case len(who) > 1:
			outcome = duplicated
		case who[0] != sent.agent:
			outcome = misrouted
		}
		outcomes[outcome]++
	}
	for text := range arrivals {
		if _, sent := echoes[text]; !sent && strings.HasPrefix(text, "soak-") {
			outcomes[misrouted]++ // arrived, but nobody sent it
		}
	}
	total := 0
	for _, n := range outcomes {
		total += n
	}
	fmt.Printf("soak: %d agents, %s, %d requests: %d lost, %d duplicated, %d misrouted, "+
		"%d wrongly decided, %d failed\n", agents, *soak, total, outcomes[lost],
		outcomes[duplicated], outcomes[misrouted], outcomes[wrongDecision], outcomes[failed])
	fmt.Printf("soak: %d passed, %d failed\n", outcomes[ok], total-outcomes[ok])
	if outcomes[ok] != total {
		t.Errorf("soak: %d of %d requests went wrong", total-outcomes[ok], total)
	}

	// Everything the load started must end, and its memory be collected;
	// the test's own books go first.
	echoes, arrivals = nil, nil
	for _, w := range witnesses {
		w.mu.Lock()
		w.seen = map[string][]string{}
		w.mu.Unlock()
	}
	for _, r := range recorders { // the upstreams' record of every request's headers
		r.mu.Lock()
		r.headers, r.methods = nil, nil
		r.mu.Unlock()
	}
	closeIdle()
	const slack = 16
	settled := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines+slack && time.Now().Before(settled) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseGoroutines+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the soak, %d before:\n%s", n, baseGoroutines,
			buf[:runtime.Stack(buf, true)])
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("goroutines %d before, %d after; heap %d MiB before, %d MiB after", baseGoroutines,
		runtime.NumGoroutine(), before.HeapAlloc>>20, after.HeapAlloc>>20)
	// What stays is bounded state: the connectors' replay caches hold each
	// assertion's ID until the assertion expires.
	if after.HeapAlloc > before.HeapAlloc+16<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB over the soak", before.HeapAlloc>>20, after.HeapAlloc>>20)
	}
}
