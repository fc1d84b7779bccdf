package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockhq/airlock/pkg/mcp"
)

// runBridge starts a Bridge to endpoint and returns a func that sends one
// line, and the lines the bridge writes back.
func runBridge(t *testing.T, endpoint string, max int) (send func(string), out <-chan string, closeIn func()) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	b := &Bridge{Endpoint: endpoint, Client: http.DefaultClient, MaxMessage: max,
		RetryDelay: 10 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		done <- b.Run(t.Context(), inR, outW)
		outW.Close()
	}()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var once sync.Once
	closeIn = func() {
		once.Do(func() {
			inW.Close()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
	t.Cleanup(closeIn)
	return func(line string) { fmt.Fprintln(inW, line) }, lines, closeIn
}

func next(t *testing.T, lines <-chan string) map[string]any {
	t.Helper()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("the bridge wrote nothing more")
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("the bridge wrote %q, not JSON: %v", line, err)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the bridge wrote nothing within 10s")
	}
	return nil
}

func errorOf(t *testing.T, m map[string]any) (id any, code float64, msg string) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("want a JSON-RPC error, got %v", m)
	}
	return m["id"], e["code"].(float64), e["message"].(string)
}

// TestBridgeRefusesBadInput checks what the bridge answers itself, without
// sending anything: lines that are not one JSON-RPC message.
func TestBridgeRefusesBadInput(t *testing.T) {
	var posts sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Store(r.URL.Path, true)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	send, lines, closeIn := runBridge(t, srv.URL+"/mcp/x", 200)
	tests := []struct {
		line string
		code float64
		text string
	}{
		{"not json", mcp.CodeParseError, "not one JSON-RPC message"},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, mcp.CodeInvalidRequest, "batches"},
		{`{"jsonrpc":"2.0","id":1,"method":"ping"} trailing`, mcp.CodeParseError, "not one JSON-RPC"},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 300) + `"}}`,
			mcp.CodeInvalidRequest, "over 200 bytes"},
	}
	for _, tt := range tests {
		send(tt.line)
		id, code, msg := errorOf(t, next(t, lines))
		if id != nil || code != tt.code || !strings.Contains(msg, tt.text) {
			t.Errorf("%.40q: error id %v code %v %q; want code %v and %q", tt.line, id, code, msg, tt.code, tt.text)
		}
	}
	closeIn()
	if _, sent := posts.Load("/mcp/x"); sent {
		t.Error("the bridge sent a message it refused")
	}
}

// TestBridgeDeliveryFailures checks that every request the bridge cannot
// deliver, or whose answer is not a JSON-RPC message, gets an error for
// its id that says why, and that JSON-RPC errors from the edge go through.
func TestBridgeDeliveryFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"plain401"`):
			http.Error(w, "no certificate", http.StatusUnauthorized)
		case strings.Contains(string(body), `"nullid"`):
			mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeInsufficientScope, "scope too narrow", nil)
		case strings.Contains(string(body), `"accepted"`):
			w.WriteHeader(http.StatusAccepted)
		case strings.Contains(string(body), `"cut"`):
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
		}
	}))
	defer srv.Close()
	send, lines, _ := runBridge(t, srv.URL+"/mcp/x", 0)
	tests := []struct {
		method string
		code   float64
		text   string
	}{
		{"plain401", mcp.CodeBridgeFailed, "the edge answered 401 Unauthorized: no certificate"},
		{"nullid", mcp.CodeInsufficientScope, "scope too narrow"},
		{"accepted", mcp.CodeBridgeFailed, "accepted the request with 202 but sent no answer"},
	}
	for i, tt := range tests {
		send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"%s"}`, i+1, tt.method))
		id, code, msg := errorOf(t, next(t, lines))
		if id != float64(i+1) || code != tt.code || !strings.Contains(msg, tt.text) {
			t.Errorf("%s: error id %v code %v %q; want id %d, code %v, %q", tt.method, id, code, msg, i+1, tt.code, tt.text)
		}
	}
	send(`{"jsonrpc":"2.0","id":"c","method":"cut"}`)
	if m := next(t, lines); m["method"] != "notifications/progress" {
		t.Errorf("first line of the cut stream = %v", m)
	}
	if id, code, msg := errorOf(t, next(t, lines)); id != "c" || code != mcp.CodeBridgeFailed ||
		!strings.Contains(msg, "ended the answer's event stream before the answer") {
		t.Errorf("cut stream: error id %v code %v %q", id, code, msg)
	}

	// Nothing listens here any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	send2, lines2, _ := runBridge(t, "http://"+addr+"/mcp/x", 0)
	send2(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
	if id, code, msg := errorOf(t, next(t, lines2)); id != float64(9) || code != mcp.CodeBridgeFailed ||
		!strings.Contains(msg, "cannot reach the edge") {
		t.Errorf("unreachable edge: error id %v code %v %q", id, code, msg)
	}
}

// TestBridgeSession checks the session's life: the session id and the
// protocol version learnt from initialize are sent with what follows,
// the 2026-07-28 routing headers, a broken answer stream resumed with
// Last-Event-ID, the standing GET stream, and DELETE at the end.
func TestBridgeSession(t *testing.T) {
	type seen struct {
		method, session, version, mcpMethod, mcpName, lastID string
	}
	var mu sync.Mutex
	var got []seen
	deleted := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		s := seen{method: r.Method + " " + m.Method, session: r.Header.Get(headerSession),
			version: r.Header.Get(headerVersion), mcpMethod: r.Header.Get(headerMethod),
			mcpName: r.Header.Get(headerName), lastID: r.Header.Get(headerLastID)}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			close(deleted)
		case r.Method == http.MethodGet && s.lastID == "e1":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resumed\":true}}\n\n")
		case r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "id: g1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case m.Method == "initialize":
			w.Header().Set(headerSession, "s-1")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "{\"jsonrpc\":\"2.0\",\"id\":1,\n \"result\":{\"protocolVersion\":\"2025-11-25\"}}")
		case m.Method == "tools/call":
			// The stream breaks after a first event: the bridge resumes it.
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "id: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	send, lines, closeIn := runBridge(t, srv.URL+"/mcp/x", 0)
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`)
	if m := next(t, lines); m["result"] == nil {
		t.Fatalf("initialize answer = %v", m)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}`)
	methods := map[string]bool{}
	for range 3 { // progress, resumed answer, and the GET stream's message
		m := next(t, lines)
		methods[fmt.Sprint(m["method"])] = true
		if r, ok := m["result"].(map[string]any); ok && r["resumed"] != true {
			t.Errorf("answer to the call = %v", m)
		}
	}
	if !methods["notifications/progress"] || !methods["notifications/message"] {
		t.Errorf("messages relayed = %v", methods)
	}
	// A stateless 2026-07-28 request carries its version in _meta and gets
	// the routing headers.
	send(`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","_meta":{"protocolVersion":"2026-07-28"}}}`)
	next(t, lines) // 202 without an answer: an error line
	closeIn()
	select {
	case <-deleted:
	case <-time.After(5 * time.Second):
		t.Fatal("no DELETE at the end of input")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range got {
		switch s.method {
		case "POST initialize":
			if s.session != "" || s.version != "" {
				t.Errorf("initialize sent with session %q version %q", s.session, s.version)
			}
		case "POST tools/call", "POST notifications/initialized", "DELETE ":
			if s.session != "s-1" || s.version != "2025-11-25" || s.mcpMethod != "" {
				t.Errorf("%s sent with session %q version %q Mcp-Method %q", s.method, s.session, s.version, s.mcpMethod)
			}
		case "POST prompts/get":
			if s.version != "2026-07-28" || s.mcpMethod != "prompts/get" || s.mcpName != "p" {
				t.Errorf("2026-07-28 request headers: %+v", s)
			}
		}
	}
	resumed := false
	for _, s := range got {
		resumed = resumed || (s.method == "GET " && s.lastID == "e1")
	}
	if !resumed {
		t.Errorf("the broken stream was not resumed with Last-Event-ID e1: %+v", got)
	}
}
