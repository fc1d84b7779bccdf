package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
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
		{`null`, mcp.CodeInvalidRequest, "not a JSON-RPC 2.0 request"},
		{`{}`, mcp.CodeInvalidRequest, "not a JSON-RPC 2.0 request"},
		{`{"id":"x","method":"ping"}`, mcp.CodeInvalidRequest, "not a JSON-RPC 2.0 request"},
		{`{"jsonrpc":"2.0","id":null,"method":"tools/call"}`, mcp.CodeInvalidRequest, "not a JSON-RPC"},
		{`{"jsonrpc":"2.0","id":"x","result":{},"error":{}}`, mcp.CodeInvalidRequest, "not a JSON-RPC"},
	}
	for _, tt := range tests {
		send(tt.line)
		// The error carries the line's id when it has a usable one.
		id, code, msg := errorOf(t, next(t, lines))
		if (id != nil && id != "x") || code != tt.code || !strings.Contains(msg, tt.text) {
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

// sessionServer is a scripted MCP endpoint for TestBridgeSession that
// records what each request carried.
type sessionServer struct {
	mu      sync.Mutex
	seen    []seen
	deleted []string
}

type seen struct {
	method, session, version, mcpMethod, mcpName, lastID, param string
}

func (ss *sessionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	json.NewDecoder(r.Body).Decode(&m)
	s := seen{method: r.Method + " " + m.Method, session: r.Header.Get(headerSession),
		version: r.Header.Get(headerVersion), mcpMethod: r.Header.Get(mcp.HeaderMethod),
		mcpName: r.Header.Get(mcp.HeaderName), lastID: r.Header.Get(headerLastID),
		param: r.Header.Get("Mcp-Param-Region")}
	ss.mu.Lock()
	ss.seen = append(ss.seen, s)
	if r.Method == http.MethodDelete {
		ss.deleted = append(ss.deleted, s.session)
	}
	ss.mu.Unlock()
	sse := func(events string) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, events)
	}
	switch {
	case r.Method == http.MethodDelete:
	case r.Method == http.MethodGet && s.lastID == "e1":
		sse("id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resumed\":true}}\n\n")
	case r.Method == http.MethodGet && s.lastID == "p0":
		sse("id: p1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resumed\":true}}\n\n")
	case r.Method == http.MethodGet:
		sse("id: g1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case m.Method == "initialize":
		w.Header().Set(headerSession, fmt.Sprintf("s-%s", m.ID))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"jsonrpc\":\"2.0\",\"id\":%s,\n \"result\":{\"protocolVersion\":\"2025-11-25\"}}", m.ID)
	case m.Method == "tools/list":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"route","inputSchema":`+
			`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}}`, m.ID)
	case m.Method == "tools/call" && m.Params.Name == "echo":
		// A progress event, then the stream breaks: the bridge resumes.
		sse("id: e1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
	case m.Method == "tools/call" && m.Params.Name == "primed":
		// Only the priming event, which carries an id and no data.
		sse("id: p0\ndata:\n\n")
	case m.Method == "tools/call":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// TestBridgeSession checks the session's life: the session id and the
// protocol version learnt from initialize are sent with what follows,
// broken answer streams are resumed with Last-Event-ID (also after a
// priming event alone), the standing GET stream relays, a second
// initialize starts a new session and ends the old one, 2026-07-28
// requests get their routing and parameter headers, and the session ends
// with DELETE.
func TestBridgeSession(t *testing.T) {
	ss := &sessionServer{}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	send, lines, closeIn := runBridge(t, srv.URL+"/mcp/x", 0)
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`)
	if m := next(t, lines); m["result"] == nil {
		t.Fatalf("initialize answer = %v", m)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}`)
	got := map[string]bool{}
	for range 3 { // progress, the resumed answer, and the GET stream's message
		m := next(t, lines)
		if m["error"] != nil {
			t.Fatalf("error line %v", m)
		}
		if r, ok := m["result"].(map[string]any); ok && m["id"] == float64(2) && r["resumed"] == true {
			got["answer"] = true
		}
		got[fmt.Sprint(m["method"])] = true
	}
	if !got["answer"] || !got["notifications/progress"] || !got["notifications/message"] {
		t.Errorf("messages relayed: %v", got)
	}
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"primed"}}`)
	if m := next(t, lines); m["id"] != float64(3) || m["result"] == nil {
		t.Errorf("answer after a priming event alone = %v, want the resumed answer", m)
	}

	// Sessionless 2026-07-28 requests carry their version in _meta; the
	// bridge adds the routing headers, and Mcp-Param-Region for the
	// argument the tool list bound to it.
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	send(`{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{` + meta + `}}`)
	next(t, lines)
	send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"route","arguments":{"region":"eu"},` + meta + `}}`)
	if m := next(t, lines); m["id"] != float64(5) || m["result"] == nil {
		t.Errorf("answer to route = %v", m)
	}
	send(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"route","arguments":{"region":"zürich"},` + meta + `}}`)
	next(t, lines)

	send(`{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`)
	next(t, lines)
	closeIn()

	ss.mu.Lock()
	defer ss.mu.Unlock()
	var params []string
	for _, s := range ss.seen {
		switch s.method {
		case "POST initialize":
			if s.session != "" || s.version != "" {
				t.Errorf("initialize sent with session %q version %q", s.session, s.version)
			}
		case "POST notifications/initialized":
			if s.session != "s-1" || s.version != "2025-11-25" || s.mcpMethod != "" {
				t.Errorf("%s sent with %+v", s.method, s)
			}
		case "POST tools/call":
			if s.mcpName == "route" {
				params = append(params, s.param)
				if s.version != "2026-07-28" || s.mcpMethod != "tools/call" {
					t.Errorf("2026-07-28 request headers: %+v", s)
				}
			} else if s.session != "s-1" || s.version != "2025-11-25" {
				t.Errorf("%s sent with %+v", s.method, s)
			}
		}
	}
	if want := []string{"eu", "=?base64?esO8cmljaA==?="}; fmt.Sprint(params) != fmt.Sprint(want) {
		t.Errorf("Mcp-Param-Region headers = %q, want %q", params, want)
	}
	var lastIDs []string
	for _, s := range ss.seen {
		if s.method == "GET " && s.lastID != "" {
			lastIDs = append(lastIDs, s.lastID)
		}
	}
	if fmt.Sprint(lastIDs) != "[e1 p0]" {
		t.Errorf("streams resumed with Last-Event-ID %v, want [e1 p0]", lastIDs)
	}
	slices.Sort(ss.deleted)
	if fmt.Sprint(ss.deleted) != "[s-1 s-7]" {
		t.Errorf("sessions deleted %v, want s-1 (replaced by a new initialize) and s-7 (at the end)",
			ss.deleted)
	}
}

// TestBridgeCancel checks that notifications/cancelled stops relaying the
// request it names: its POST ends, and no answer is written for it.
func TestBridgeCancel(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Method string `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		if m.Method != "tools/call" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(ended)
	}))
	defer srv.Close()
	send, lines, closeIn := runBridge(t, srv.URL+"/mcp/x", 0)
	send(`{"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"wait"}}`)
	<-started
	send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow"}}`)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled request's POST is still open")
	}
	closeIn()
	if line, ok := <-lines; ok {
		t.Errorf("the bridge wrote %s for a cancelled request", line)
	}
}
