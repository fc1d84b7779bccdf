package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
)

// demoEnv starts an edge serving "demo", one upstream and one connector.
func demoEnv(t *testing.T, stateless bool, modEdge func(*edge.Config), modConn func(*connector.Config)) (*env, *edge.Edge, *upstream) {
	t.Helper()
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1", "c2"}}}, modEdge)
	up := v.startUpstream(stateless)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, modConn)
	return v, e, up
}

func TestMCPSessionThroughEdge(t *testing.T) {
	v, e, up := demoEnv(t, false, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	var callDone atomic.Bool
	progress := make(chan progressSeen, 16)
	waiting := make(chan struct{}, 1) // the wait tool has started
	logs := make(chan *mcp.LoggingMessageParams, 4)
	cs := connectMCP(t, client, mcpURL(e, "demo"), &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.ProgressToken == "w1" {
				waiting <- struct{}{}
				return
			}
			progress <- progressSeen{afterCall: callDone.Load(), at: time.Now()}
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "via " + req.Params.Message}}, nil
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) { logs <- req.Params },
	})

	t.Run("tools/list", func(t *testing.T) {
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatalf("ListTools() = %v", err)
		}
		names := map[string]bool{}
		for _, tool := range res.Tools {
			names[tool.Name] = true
		}
		for _, want := range []string{"add_note", "read_note", "count", "ask", "announce", "echo"} {
			if !names[want] {
				t.Errorf("ListTools() lacks %q", want)
			}
		}
	})

	t.Run("tools/call", func(t *testing.T) {
		call(t, cs, "add_note", map[string]any{"title": "plan", "body": "ship it"})
		if got := textOf(t, call(t, cs, "read_note", map[string]any{"title": "plan"})); got != "ship it" {
			t.Errorf("read_note = %q, want %q", got, "ship it")
		}
	})

	t.Run("progress streams while the call runs", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{
			Name:      "count",
			Arguments: map[string]any{"n": 4, "delay_ms": 150},
			Meta:      mcp.Meta{"progressToken": "p1"},
		})
		callDone.Store(true)
		if err != nil || textOf(t, res) != "counted to 4" {
			t.Fatalf("count = %v, %v", res, err)
		}
		first := <-progress
		if first.afterCall {
			t.Error("the first progress notification arrived only after the call returned: the stream was buffered")
		}
		last := first
		for range 3 {
			last = <-progress
		}
		// The server sends one every 150 ms; a buffered stream would
		// deliver them together. Only a lower bound: a slow machine
		// spreads them further, never closer.
		if spread := last.at.Sub(first.at); spread < 300*time.Millisecond {
			t.Errorf("four progress notifications 150 ms apart arrived within %s: the stream was buffered", spread)
		}
	})

	t.Run("cancellation reaches the upstream tool", func(t *testing.T) {
		callCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(callCtx, &mcp.CallToolParams{
				Name:      "wait",
				Arguments: map[string]any{"seconds": 60},
				Meta:      mcp.Meta{"progressToken": "w1"},
			})
			done <- err
		}()
		<-waiting
		cancel()
		if err := <-done; err == nil {
			t.Fatal("a cancelled call returned no error")
		}
		if err := up.stats.AwaitCancelled(ctx, 1); err != nil {
			t.Fatalf("the upstream tool never saw the cancellation: %v", err)
		}
	})

	t.Run("server-to-client request", func(t *testing.T) {
		if got := textOf(t, call(t, cs, "ask", map[string]any{"question": "colour?"})); got != "via colour?" {
			t.Errorf("ask = %q, want the client's elicitation answer", got)
		}
	})

	t.Run("GET stream delivers notifications", func(t *testing.T) {
		if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
			t.Fatalf("SetLoggingLevel() = %v", err)
		}
		call(t, cs, "announce", map[string]any{"message": "maintenance at noon"})
		select {
		case got := <-logs:
			if got.Data != "maintenance at noon" {
				t.Errorf("notification data = %v", got.Data)
			}
		case <-ctx.Done():
			t.Fatal("no notification arrived on the GET stream")
		}
	})

	t.Run("DELETE ends the session", func(t *testing.T) {
		sid := cs.ID()
		if err := cs.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if !up.rec.sawMethod(http.MethodDelete, sid) {
			t.Fatal("the DELETE of the session never reached the upstream")
		}
		resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`,
			http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}})
		if err != nil {
			t.Fatal(err)
		}
		checkRPCError(t, resp, body, http.StatusNotFound, airmcp.CodeSessionNotFound)
	})
}

// progressSeen is one progress notification as the client got it.
type progressSeen struct {
	afterCall bool // the call had already returned
	at        time.Time
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("CallTool(%q) = %v", name, err)
	}
	if res.IsError {
		t.Fatalf("CallTool(%q) returned a tool error: %s", name, textOf(t, res))
	}
	return res
}

// checkRPCError checks an Airlock error answer: the status, a JSON-RPC
// error with the code, and the request ID in both header and body.
func checkRPCError(t *testing.T, resp *http.Response, body []byte, status, code int) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	var msg struct {
		JSONRPC string `json:"jsonrpc"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				RequestID string `json:"request_id"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("error body %q is not JSON-RPC: %v", body, err)
	}
	if msg.JSONRPC != "2.0" || msg.Error.Code != code || msg.Error.Message == "" {
		t.Errorf("error = %+v, want code %d with a message", msg.Error, code)
	}
	if rid := resp.Header.Get("Airlock-Request-Id"); rid == "" || rid != msg.Error.Data.RequestID {
		t.Errorf("request id header %q, body %q; want the same, non-empty", rid, msg.Error.Data.RequestID)
	}
	return msg.Error.Message
}

// TestTransparentStateless compares the answer of a stateless server
// directly and through the edge: same status, headers and bytes.
func TestTransparentStateless(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	body := echoCall(1, "transparent ✓")

	direct, directBody, err := rpc(t, ctx, http.DefaultClient, up.url, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	via, viaBody, err := rpc(t, ctx, client, mcpURL(e, "demo"), body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if direct.StatusCode != http.StatusOK || via.StatusCode != direct.StatusCode {
		t.Fatalf("status through edge %d, direct %d", via.StatusCode, direct.StatusCode)
	}
	if string(viaBody) != string(directBody) {
		t.Errorf("body through edge differs:\n via: %s\n direct: %s", viaBody, directBody)
	}
	for k := range direct.Header {
		if k == "Date" || k == "Connection" { // Connection is hop-by-hop
			continue
		}
		if got, want := via.Header.Values(k), direct.Header.Values(k); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("header %s through edge = %q, direct %q", k, got, want)
		}
	}
}

func TestCancellationReachesUpstream(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	// The wait tool reports progress once it runs; reading that event
	// off the SSE stream proves the call is under way upstream.
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// On the stateless 2026-07-28 protocol the POST is the whole request, so
	// hanging up is how an agent cancels.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wait","arguments":{"seconds":60},` +
		`"_meta":{"progressToken":"w1","io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}}}}`
	req, _ := http.NewRequestWithContext(callCtx, http.MethodPost, mcpURL(e, "demo"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "wait")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sawProgress := false
	for !sawProgress && sc.Scan() {
		sawProgress = strings.Contains(sc.Text(), "notifications/progress")
	}
	if !sawProgress {
		t.Fatalf("the call ended before its progress event (status %d, err %v)", resp.StatusCode, sc.Err())
	}

	cancel()
	if err := up.stats.AwaitCancelled(ctx, 1); err != nil {
		t.Fatalf("the upstream tool never saw the cancellation: %v", err)
	}
	waitFor(t, "the upstream request context to end", func() bool { return up.rec.cancelled.Load() == 1 })
}

func TestLargeBodiesBothWays(t *testing.T) {
	const size = 10 << 20
	v, e, _ := demoEnv(t, true, func(c *edge.Config) { c.MaxBodyBytes = 16 << 20 }, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	text := strings.Repeat("z", size)
	resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(1, text), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("echo of %d bytes: %v, %v", size, resp, err)
	}
	if n := strings.Count(string(body), "z"); n != size {
		t.Errorf("echo returned %d of %d bytes", n, size)
	}

	blob := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"blob","arguments":{"size":10485760}}}`
	resp, body, err = rpc(t, ctx, client, mcpURL(e, "demo"), blob, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("blob of %d bytes: %v, %v", size, resp, err)
	}
	if n := strings.Count(string(body), "a"); n < size {
		t.Errorf("blob returned %d of %d bytes", n, size)
	}

	tooBig := echoCall(3, strings.Repeat("z", 16<<20))
	resp, body, err = rpc(t, ctx, client, mcpURL(e, "demo"), tooBig, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRPCError(t, resp, body, http.StatusRequestEntityTooLarge, airmcp.CodeBodyTooLarge)
}

func TestConcurrentRequests(t *testing.T) {
	const n = 200
	v, e, up := demoEnv(t, true, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("request-%d", i)
			resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(i, want), nil)
			switch {
			case err != nil:
				errs <- err
			case resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"text":"`+want+`"`):
				errs <- fmt.Errorf("request %d: status %d body %s", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := up.rec.requests.Load(); got != n {
		t.Errorf("upstream saw %d requests, want %d", got, n)
	}
}

// TestStalledReaderDoesNotBlockTunnel leaves a large response unread and
// checks that other requests on the same single tunnel still complete.
func TestStalledReaderDoesNotBlockTunnel(t *testing.T) {
	v, e, _ := demoEnv(t, true, nil, func(c *connector.Config) { c.Connections = 1 })
	tc := v.agentTLS("alice")
	ctx := testContext(t)

	stalled := httpClient(t, tc)
	blob := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"blob","arguments":{"size":12582912}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, mcpURL(e, "demo"), strings.NewReader(blob))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := stalled.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read: the reader stalls

	other := httpClient(t, tc)
	for i := range 50 {
		resp, body, err := rpc(t, ctx, other, mcpURL(e, "demo"), echoCall(i, "still moving"), nil)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "still moving") {
			t.Fatalf("request %d behind a stalled reader: %v %s", i, err, body)
		}
	}
}

// sseEvents reads SSE events off body and sends their id and data.
func sseEvents(body io.Reader) <-chan [2]string {
	out := make(chan [2]string, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var id, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && data != "":
				out <- [2]string{id, data}
				id, data = "", ""
			}
		}
	}()
	return out
}

// TestResumeOn20250618 speaks MCP 2025-06-18 over raw HTTP through the
// edge and resumes the GET stream with Last-Event-ID: an event sent while
// the agent was away arrives after it comes back.
func TestResumeOn20250618(t *testing.T) {
	v, e, _ := demoEnv(t, false, nil, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	url := mcpURL(e, "demo")
	const version = "2025-06-18"

	resp, body, err := rpc(t, ctx, client, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+
		version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"protocolVersion":"`+version+`"`) {
		t.Fatalf("initialize on %s = %v %s", version, err, body)
	}
	session := http.Header{"Mcp-Session-Id": {resp.Header.Get("Mcp-Session-Id")}, "Mcp-Protocol-Version": {version}}
	post := func(id int, method, params string) {
		t.Helper()
		msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
		if id == 0 {
			msg = fmt.Sprintf(`{"jsonrpc":"2.0","method":%q}`, method)
		}
		resp, body, err := rpc(t, ctx, client, url, msg, session)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s = %v %d %s", method, err, resp.StatusCode, body)
		}
	}
	post(0, "notifications/initialized", "")
	post(2, "logging/setLevel", `{"level":"info"}`)

	openGET := func(lastEventID string) (<-chan [2]string, context.CancelFunc) {
		t.Helper()
		gctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(gctx, http.MethodGet, url, nil)
		req.Header = session.Clone()
		req.Header.Set("Accept", "text/event-stream")
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			cancel()
			t.Fatalf("GET stream (Last-Event-ID %q) = %v %v", lastEventID, resp, err)
		}
		return sseEvents(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	next := func(events <-chan [2]string, want string) string {
		t.Helper()
		select {
		case ev := <-events:
			if !strings.Contains(ev[1], want) {
				t.Fatalf("GET stream event = %s, want %q", ev[1], want)
			}
			return ev[0]
		case <-ctx.Done():
			t.Fatalf("no %q event on the GET stream", want)
		}
		return ""
	}

	events, closeGET := openGET("")
	post(3, "tools/call", `{"name":"announce","arguments":{"message":"first"}}`)
	lastID := next(events, "first")
	if lastID == "" {
		t.Fatal("the GET stream's event has no id to resume from")
	}
	closeGET()

	post(4, "tools/call", `{"name":"announce","arguments":{"message":"while away"}}`)
	resumed, closeResumed := openGET(lastID)
	defer closeResumed()
	next(resumed, "while away")
}
