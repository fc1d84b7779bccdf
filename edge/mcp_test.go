package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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
	progress := make(chan bool, 16) // whether the call had returned when each arrived
	logs := make(chan *mcp.LoggingMessageParams, 4)
	cs := connectMCP(t, client, mcpURL(e, "demo"), &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, _ *mcp.ProgressNotificationClientRequest) {
			progress <- callDone.Load()
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
		if afterCall := <-progress; afterCall {
			t.Error("the first progress notification arrived only after the call returned: the stream was buffered")
		}
		for range 3 {
			<-progress
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
		var sawDelete bool
		for _, h := range up.rec.seen() {
			sawDelete = sawDelete || h.Get("Mcp-Session-Id") == sid
		}
		if !sawDelete {
			t.Fatal("the upstream never saw the session")
		}
		resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`,
			http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}})
		if err != nil {
			t.Fatal(err)
		}
		checkRPCError(t, resp, body, http.StatusNotFound, airmcp.CodeSessionNotFound)
	})
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
