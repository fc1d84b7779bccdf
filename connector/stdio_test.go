//go:build unix

package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlockhq/airlock/pkg/mcp"
)

// Lines a shell script writes to answer the bridge's initialize (stateless
// requests) or a client's initialize with id 1 (sessions).
const (
	initResult = `"result":{"protocolVersion":"2025-11-25","capabilities":{},` +
		`"serverInfo":{"name":"sh","version":"1"}}`
	bridgeInitAnswer = `echo '{"jsonrpc":"2.0","id":"airlock-initialize",` + initResult + `}'`
	clientInitAnswer = `echo '{"jsonrpc":"2.0","id":1,` + initResult + `}'`
	clientInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":` +
		`{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
)

// stdioHarness is a command resource that runs a shell script, served
// on its pipe listener, and a client for it.
type stdioHarness struct {
	srv    *stdioServer
	client *http.Client
}

// newStdioHarness serves a resource whose processes run script with
// /bin/sh (args become $1 and on); mod may change the server before it
// starts.
func newStdioHarness(
	t *testing.T,
	script string,
	args []string,
	mod func(*stdioServer),
) *stdioHarness {
	t.Helper()
	res := Resource{
		Name:         "t",
		Command:      "/bin/sh",
		Args:         append([]string{"-c", script, "sh"}, args...),
		MaxProcesses: 4,
		IdleTimeout:  time.Hour,
	}
	s := newStdioServer(res, "c1", slog.New(slog.DiscardHandler))
	if mod != nil {
		mod(s)
	}
	s.start()
	tr := &http.Transport{DialContext: s.listener.DialContext}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.close()
	})
	return &stdioHarness{srv: s, client: &http.Client{Transport: tr}}
}

// post sends body and returns the answer; a failed round trip fails the
// test. hdr takes pairs of header names and values.
func (h *stdioHarness) post(
	t *testing.T,
	ctx context.Context,
	body string,
	hdr ...string,
) (*http.Response, []byte) {
	t.Helper()
	req := newPost(ctx, body, hdr...)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("POST %.80s: %v", body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to %.80s: %v", body, err)
	}
	return resp, b
}

// newPost returns a POST of body to the bridge, with the headers MCP
// asks for and hdr's pairs of header names and values.
func newPost(ctx context.Context, body string, hdr ...string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://t.stdio/mcp",
		strings.NewReader(body))
	if err != nil {
		panic(err) // the URL is fixed and valid
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// rpcAnswer is a JSON-RPC response, from a plain JSON body or the last
// event of an SSE stream.
type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func parseAnswer(t *testing.T, body []byte) rpcAnswer {
	t.Helper()
	data := body
	if i := bytes.LastIndex(body, []byte("data: ")); i >= 0 {
		data, _, _ = bytes.Cut(body[i+len("data: "):], []byte("\n"))
	}
	var a rpcAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatalf("answer %q is not a JSON-RPC message: %v", body, err)
	}
	return a
}

// checkError checks that an answer is a JSON-RPC error with code whose
// message contains want.
func checkError(t *testing.T, resp *http.Response, body []byte, status, code int, want string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	a := parseAnswer(t, body)
	if a.Error == nil || a.Error.Code != code || !strings.Contains(a.Error.Message, want) {
		t.Errorf("answer = %s, want error %d containing %q", body, code, want)
	}
}

// testCtx bounds a test that would otherwise hang on a regression.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond, for at most a bounded number of tries.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 4000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

func statelessCall(body string) string {
	return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":"` +
		body + `"}}}`
}

func TestStdioStuckStdinEndsRequest(t *testing.T) {
	// Answers initialize, then never reads stdin again.
	script := "read l; " + bridgeInitAnswer + "; read l; exec sleep 1000"
	h := newStdioHarness(t, script, nil, func(s *stdioServer) {
		s.writeTimeout = 50 * time.Millisecond
	})

	// Far more than a pipe holds.
	big := statelessCall(strings.Repeat("a", 1<<20))
	resp, body := h.post(t, testCtx(t), big, headerVersion, "2026-07-28")
	checkError(t, resp, body, http.StatusOK, mcp.CodeUpstreamFailed,
		"stopped taking messages on stdin")
	eventually(t, "the stuck process to be reaped", func() bool { return h.srv.processes() == 0 })
}

func TestStdioRouteDoesNotWaitForStdin(t *testing.T) {
	// Sends far more server-to-client requests than a pipe holds
	// answers to, without reading stdin, then answers the call.
	script := "read l; " + bridgeInitAnswer + `; read l; read l
i=0
while [ $i -lt 3000 ]; do echo '{"jsonrpc":"2.0","id":'$i',"method":"ping"}'; i=$((i+1)); done
echo '{"jsonrpc":"2.0","id":7,"result":{"content":[]}}'
exec sleep 1000`
	h := newStdioHarness(t, script, nil, nil)

	resp, body := h.post(t, testCtx(t), statelessCall("x"), headerVersion, "2026-07-28")
	if a := parseAnswer(t, body); resp.StatusCode != http.StatusOK || a.Result == nil {
		t.Errorf("answer = %d %s, want the process's result", resp.StatusCode, body)
	}
}

func TestStdioInitializeTimeout(t *testing.T) {
	h := newStdioHarness(t, "exec sleep 1000", nil, func(s *stdioServer) {
		s.initTimeout = 50 * time.Millisecond
	})
	resp, body := h.post(t, testCtx(t), statelessCall("x"), headerVersion, "2026-07-28")
	checkError(t, resp, body, http.StatusBadGateway, mcp.CodeUpstreamFailed,
		"the process did not answer initialize within 50ms")
}

func TestStdioCapRetryAfter(t *testing.T) {
	script := "read l; " + clientInitAnswer + "; exec sleep 1000"
	h := newStdioHarness(t, script, nil, func(s *stdioServer) { s.res.MaxProcesses = 1 })
	ctx := testCtx(t)
	if resp, body := h.post(t, ctx, clientInitialize); resp.Header.Get(headerSession) == "" {
		t.Fatalf("initialize = %d %s, want a session", resp.StatusCode, body)
	}
	resp, body := h.post(t, ctx, clientInitialize)
	checkError(t, resp, body, http.StatusServiceUnavailable, mcp.CodeUpstreamFailed,
		"maximum of 1 processes")
	if got := resp.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
}

func TestStdioUnusedSessionEndsEarly(t *testing.T) {
	script := "read l; " + clientInitAnswer + "; cat >/dev/null"
	h := newStdioHarness(t, script, nil, func(s *stdioServer) {
		s.firstRequestTimeout = 50 * time.Millisecond
	})
	resp, body := h.post(t, testCtx(t), clientInitialize)
	sid := resp.Header.Get(headerSession)
	if sid == "" {
		t.Fatalf("initialize = %d %s, want a session", resp.StatusCode, body)
	}
	// idle_timeout is an hour; a session never used ends much sooner.
	eventually(t, "the unused session to end", func() bool {
		return h.srv.lookup(sid) == nil && h.srv.processes() == 0
	})
}

func TestStdioStatelessNeedsNewProtocol(t *testing.T) {
	h := newStdioHarness(t, "exit 1", nil, nil)
	ctx := testCtx(t)
	withMeta := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":` +
		`{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`
	tests := []struct {
		name   string
		body   string
		header string
		code   int
		want   string
	}{
		{"no version", statelessCall("x"), "", mcp.CodeInvalidRequest, "Mcp-Session-Id required"},
		{"older version", statelessCall("x"), "2025-11-25", mcp.CodeInvalidRequest, "Mcp-Session-Id required"},
		{"older version in _meta", withMeta, "", mcp.CodeInvalidRequest, "Mcp-Session-Id required"},
		{"unknown version", statelessCall("x"), "2099-01-01", mcp.CodeUnsupportedVersion, `"2099-01-01" is not supported`},
		{"malformed version", statelessCall("x"), "latest", mcp.CodeUnsupportedVersion, `"latest" is not supported`},
		{"header and _meta disagree", withMeta, "2026-07-28", mcp.CodeHeaderMismatch, "disagree"},
		{"not JSON", `{"jsonrpc":`, "2026-07-28", mcp.CodeParseError, "not JSON"},
		{"not JSON-RPC", `{"a":1}`, "2026-07-28", mcp.CodeInvalidRequest, "not a JSON-RPC 2.0 message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.header != "" {
				hdr = []string{headerVersion, tt.header}
			}
			resp, body := h.post(t, ctx, tt.body, hdr...)
			checkError(t, resp, body, http.StatusBadRequest, tt.code, tt.want)
		})
	}
}

func TestStdioStatelessForwardsCapabilities(t *testing.T) {
	seen := filepath.Join(t.TempDir(), "initialize.json")
	script := `read l; printf '%s\n' "$l" > "$1"; ` + bridgeInitAnswer + `; read l; read l
echo '{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}'
cat >/dev/null`
	h := newStdioHarness(t, script, []string{seen}, nil)

	// The version only in _meta is enough.
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}}`
	resp, answer := h.post(t, testCtx(t), body)
	if a := parseAnswer(t, answer); resp.StatusCode != http.StatusOK || a.Result == nil {
		t.Fatalf("answer = %d %s, want the process's result", resp.StatusCode, answer)
	}
	got, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	var init struct {
		Params struct {
			ProtocolVersion string          `json:"protocolVersion"`
			Capabilities    json.RawMessage `json:"capabilities"`
		} `json:"params"`
	}
	if err := json.Unmarshal(got, &init); err != nil {
		t.Fatalf("the process got %q: %v", got, err)
	}
	const wantCaps = `{"sampling":{}}`
	p := init.Params
	if p.ProtocolVersion != protocolInitialize || string(p.Capabilities) != wantCaps {
		t.Errorf("the process was initialized with %s, want version %s and capabilities %s",
			got, protocolInitialize, wantCaps)
	}
}

func TestStdioProgressTokenInUse(t *testing.T) {
	// Reads everything, answers only initialize.
	script := "read l; " + clientInitAnswer + "; cat >/dev/null"
	h := newStdioHarness(t, script, nil, nil)
	ctx := testCtx(t)
	resp, body := h.post(t, ctx, clientInitialize)
	sid := resp.Header.Get(headerSession)
	if sid == "" {
		t.Fatalf("initialize = %d %s, want a session", resp.StatusCode, body)
	}
	withToken := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call",`+
			`"params":{"name":"slow","_meta":{"progressToken":"p"}}}`, id)
	}

	first, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := newPost(first, withToken(2), headerSession, sid)
		if resp, err := h.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	ss := h.srv.lookup(sid)
	eventually(t, "the first call to be in flight", func() bool {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return ss.progress["sp"] != nil
	})

	resp, body = h.post(t, ctx, withToken(3), headerSession, sid)
	checkError(t, resp, body, http.StatusBadRequest, mcp.CodeInvalidRequest, "progress token")
}

func TestRouteAnswersRequestItCannotDeliver(t *testing.T) {
	s := newStdioServer(Resource{Name: "t", MaxProcesses: 1, IdleTimeout: time.Hour}, "c1",
		slog.New(slog.DiscardHandler))
	ss := newStdioSession(s, "sid", nil, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { ss.idle.Stop() })
	c, err := ss.begin(&message{id: json.RawMessage(`1`), method: "tools/call"})
	if err != nil {
		t.Fatal(err)
	}
	// The stream has had its last message: it takes no more.
	c.st.push([]byte(`{}`), true)

	ss.route([]byte(`{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{}}`))
	select {
	case b := <-ss.replies:
		m, err := parseMessage(b)
		if err != nil || string(m.id) != `"e1"` || m.errorCode() != mcp.CodeInternalError {
			t.Errorf("answer to the process = %s, want error %d for id \"e1\"",
				b, mcp.CodeInternalError)
		}
	default:
		t.Error("the process got no answer to a request no stream could carry")
	}
}

func TestProcessStopWithUnreadStdout(t *testing.T) {
	p, err := startProcess(Resource{Command: "/bin/sh", Args: []string{"-c", "exec yes"}},
		slog.New(slog.DiscardHandler), func() {})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads stdout: stop must see to it itself.
	stopped := make(chan struct{})
	go func() {
		p.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-testCtx(t).Done():
		t.Fatal("stop() never returned for a process whose stdout nobody reads")
	}
}

// gone reports whether process pid is dead: reaped, or a zombie nobody
// reaps (PID 1 of a container may not).
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(stat, []byte(") "))
	return bytes.HasPrefix(rest, []byte("Z"))
}

func TestProcessGroupEndsWithProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	script := `sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$1"; exit 3`
	res := Resource{Command: "/bin/sh", Args: []string{"-c", script, "sh", pidFile}}
	p, err := startProcess(res, slog.New(slog.DiscardHandler), func() {})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.stdout)
	<-p.exited

	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", b, err)
	}
	if !gone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("process %d, started by the crashed process, outlived it", pid)
	}
}

func TestStderrLogging(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := &lineLogger{
		logger: slog.New(slog.NewJSONHandler(&buf, nil)),
		now:    func() time.Time { return now },
	}
	// One line over maxStderrLine goes out in pieces.
	fmt.Fprintf(l, "%s\n", strings.Repeat("a", maxStderrLine+10))
	for i := range maxStderrRate + 50 {
		fmt.Fprintf(l, "line %d\n", i)
	}
	l.flush()

	var pieces, lines, dropped int
	for rec := range bytes.SplitSeq(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var r struct {
			Msg     string `json:"msg"`
			Stderr  string `json:"stderr"`
			Dropped int    `json:"dropped"`
		}
		if err := json.Unmarshal(rec, &r); err != nil {
			t.Fatalf("log record %s: %v", rec, err)
		}
		switch {
		case r.Msg == "stdio server stderr lines dropped":
			dropped += r.Dropped
		case strings.HasPrefix(r.Stderr, "a"):
			pieces++
		default:
			lines++
		}
	}
	// The two pieces count against the cap.
	if pieces != 2 || lines != maxStderrRate-2 || dropped != 52 {
		t.Errorf("logged %d pieces, %d lines and %d dropped, want 2, %d and 52",
			pieces, lines, dropped, maxStderrRate-2)
	}

	// A second later lines are logged again.
	buf.Reset()
	now = now.Add(time.Second)
	fmt.Fprintln(l, "later")
	if !strings.Contains(buf.String(), `"stderr":"later"`) {
		t.Errorf("after a second, log = %s, want the line", buf.String())
	}
}

// processes returns how many processes of the resource have not been
// reaped yet.
func (s *stdioServer) processes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs
}
