//go:build unix

package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
)

// built holds the programs the package's tests build, each once, in one
// temporary folder that TestMain removes.
var built struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildProgram builds the Go program in pkg as name, once per test
// binary, and returns its path.
func buildProgram(t testing.TB, pkg, name string) string {
	t.Helper()
	built.mu.Lock()
	defer built.mu.Unlock()
	if path, ok := built.paths[name]; ok {
		return path
	}
	if built.dir == "" {
		dir, err := os.MkdirTemp("", "airlock-edge-programs-")
		if err != nil {
			t.Fatal(err)
		}
		built.dir, built.paths = dir, map[string]string{}
	}
	path := filepath.Join(built.dir, name)
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	built.paths[name] = path
	return path
}

// stdioSetup is an edge serving the stdio resource "tools" through
// connector c1, and an agent's client.
type stdioSetup struct {
	v      *env
	e      *edge.Edge
	run    *runningConnector
	client *http.Client
	url    string
	logs   *logBuffer
}

// stdioEnv starts the example stdio server as resource "tools"; mod may
// change the resource.
func stdioEnv(t *testing.T, mod func(*connector.Resource)) *stdioSetup {
	t.Helper()
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "tools", Connectors: []string{"c1"}}}, nil)
	res := connector.Resource{Name: "tools", Command: buildProgram(t,
		"github.com/airlockhq/airlock/examples/stdioserver/cmd/stdioserver", "stdioserver")}
	if mod != nil {
		mod(&res)
	}
	logs := &logBuffer{}
	v.connLogger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rc := v.startConnector(e, "c1", []connector.Resource{res}, func(c *connector.Config) {
		// Open GET streams are requests in flight; do not wait for them.
		c.DrainGrace = 300 * time.Millisecond
	})
	return &stdioSetup{
		v:      v,
		e:      e,
		run:    rc,
		client: httpClient(t, v.agentTLS("alice")),
		url:    mcpURL(e, "tools"),
		logs:   logs,
	}
}

// logBuffer collects JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the records that have every key and value of want.
func (b *logBuffer) records(want map[string]string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []map[string]any
	for line := range bytes.SplitSeq(b.buf.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		match := true
		for k, v := range want {
			match = match && fmt.Sprint(rec[k]) == v
		}
		if match {
			found = append(found, rec)
		}
	}
	return found
}

// connectSession opens an MCP session on protocol 2025-11-25, so that
// the client initializes rather than trying stateless 2026-07-28 first.
func connectSession(t *testing.T, s *stdioSetup, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	cs, err := dialSession(testContext(t), s, opts)
	if err != nil {
		t.Fatalf("connecting MCP client to %s: %v", s.url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func dialSession(ctx context.Context, s *stdioSetup, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "1"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: s.url, HTTPClient: s.client, MaxRetries: -1}
	return c.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
}

// pidOf asks the session's process for its process ID.
func pidOf(t *testing.T, cs *mcp.ClientSession) int {
	t.Helper()
	text := textOf(t, call(t, cs, "pid", nil))
	pid, err := strconv.Atoi(text)
	if err != nil || pid <= 0 {
		t.Fatalf("pid = %q, want a process ID", text)
	}
	return pid
}

// reaped reports whether no process pid exists any more, not even as a
// zombie waiting for its parent.
func reaped(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// checkSessionGone checks that the edge and connector answer a request
// in the session with 404 and CodeSessionNotFound.
func checkSessionGone(t *testing.T, s *stdioSetup, sid string) {
	t.Helper()
	resp, body, err := rpc(t, testContext(t), s.client, s.url, `{"jsonrpc":"2.0","id":99,"method":"tools/list"}`,
		http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}})
	if err != nil {
		t.Fatal(err)
	}
	checkRPCError(t, resp, body, http.StatusNotFound, airmcp.CodeSessionNotFound)
}

func TestStdioSession(t *testing.T) {
	s := stdioEnv(t, nil)
	ctx := testContext(t)
	progress := make(chan *mcp.ProgressNotificationParams, 16)
	cs := connectSession(t, s, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "via " + req.Params.Message}}, nil
		},
	})
	if cs.ID() == "" {
		t.Fatal("the session has no Mcp-Session-Id")
	}

	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("ListTools() = %v", err)
	}
	names := map[string]bool{}
	for _, tool := range res.Tools {
		names[tool.Name] = true
	}
	for _, want := range []string{"echo", "pid", "add_note", "list_notes", "slow", "ask_user", "crash"} {
		if !names[want] {
			t.Errorf("ListTools() lacks %q", want)
		}
	}

	if got := textOf(t, call(t, cs, "echo", map[string]any{"text": "through the tunnel ✓"})); got != "through the tunnel ✓" {
		t.Errorf("echo = %q", got)
	}

	// Progress travels on the call's own stream, before its answer.
	sres, err := cs.CallTool(ctx, &mcp.CallToolParams{
		Name:      "slow",
		Arguments: map[string]any{"steps": 3, "delay_ms": 20},
		Meta:      mcp.Meta{"progressToken": "s1"},
	})
	if err != nil || textOf(t, sres) != "counted to 3" {
		t.Fatalf("slow = %v, %v", sres, err)
	}
	for i := 1; i <= 3; i++ {
		select {
		case p := <-progress:
			if p.ProgressToken != "s1" || p.Progress != float64(i) {
				t.Errorf("progress %d = token %v, progress %v", i, p.ProgressToken, p.Progress)
			}
		case <-ctx.Done():
			t.Fatalf("progress notification %d never arrived", i)
		}
	}

	// A server-to-client request (elicitation) and its answer.
	if got := textOf(t, call(t, cs, "ask_user", map[string]any{"question": "colour?"})); got != "via colour?" {
		t.Errorf("ask_user = %q, want the client's elicitation answer", got)
	}

	// DELETE stops the process before it is answered.
	pid := pidOf(t, cs)
	if reaped(pid) {
		t.Fatalf("process %d of the live session is gone", pid)
	}
	sid := cs.ID()
	if err := cs.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	waitFor(t, fmt.Sprintf("process %d to be reaped", pid), func() bool { return reaped(pid) })
	checkSessionGone(t, s, sid)

	// The server's stderr went to the connector's log, with the resource
	// and the session.
	startLine := fmt.Sprintf("airlock-stdio-example 0.1.0 serving on stdio, pid %d", pid)
	want := map[string]string{"resource": "tools", "mcp_session": sid, "stderr": startLine}
	if len(s.logs.records(want)) != 1 {
		t.Errorf("no log record %v", want)
	}
}

func TestStdioSessionsAreSeparate(t *testing.T) {
	s := stdioEnv(t, nil)
	a := connectSession(t, s, nil)
	b := connectSession(t, s, nil)
	if pa, pb := pidOf(t, a), pidOf(t, b); pa == pb {
		t.Errorf("two sessions share process %d", pa)
	}
	call(t, a, "add_note", map[string]any{"title": "plan", "body": "ship it"})
	if got := textOf(t, call(t, b, "list_notes", nil)); got != "" {
		t.Errorf("list_notes of the other session = %q, want none", got)
	}
	if got := textOf(t, call(t, a, "list_notes", nil)); got != "plan" {
		t.Errorf("list_notes = %q, want %q", got, "plan")
	}
}

func TestStdioCrash(t *testing.T) {
	s := stdioEnv(t, nil)
	cs := connectSession(t, s, nil)
	pid, sid := pidOf(t, cs), cs.ID()

	_, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "crash", Arguments: map[string]any{"status": 3}})
	if err == nil {
		t.Fatal("CallTool(crash) = nil error, want the process's exit")
	}
	for _, want := range []string{"process of resource tools exited", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CallTool(crash) = %v, want an error containing %q", err, want)
		}
	}
	waitFor(t, fmt.Sprintf("process %d to be reaped", pid), func() bool { return reaped(pid) })
	checkSessionGone(t, s, sid)

	logged := map[string]string{"resource": "tools", "mcp_session": sid, "stderr": "crashing on request with status 3"}
	if len(s.logs.records(logged)) != 1 {
		t.Errorf("the process's last words are not in the log: no record %v", logged)
	}
	ended := map[string]string{"mcp_session": sid, "msg": "stdio process ended the session", "exit_status": "exit status 3"}
	if len(s.logs.records(ended)) != 1 {
		t.Errorf("no log record %v", ended)
	}
}

func TestStdioProcessCap(t *testing.T) {
	s := stdioEnv(t, func(r *connector.Resource) { r.MaxProcesses = 2 })
	a := connectSession(t, s, nil)
	b := connectSession(t, s, nil)
	pa, pb := pidOf(t, a), pidOf(t, b)

	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",` +
		`"capabilities":{},"clientInfo":{"name":"third","version":"1"}}}`
	resp, body, err := rpc(t, testContext(t), s.client, s.url, initialize, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := checkRPCError(t, resp, body, http.StatusServiceUnavailable, airmcp.CodeUpstreamFailed)
	if !strings.Contains(msg, "resource tools already runs its maximum of 2 processes") {
		t.Errorf("refusal = %q, want it to name the resource and the cap", msg)
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		t.Errorf("the refused initialize opened session %q", sid)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("the refusal over the cap has no Retry-After")
	}

	if err := a.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	c := connectSession(t, s, nil)
	if pc := pidOf(t, c); pc == pa || pc == pb {
		t.Errorf("the new session got process %d of an old one", pc)
	}
}

// TestStdioProcessCapPerAgent: with max_processes_per_agent, one agent
// cannot take every process of a resource; another agent still gets one.
func TestStdioProcessCapPerAgent(t *testing.T) {
	s := stdioEnv(t, func(r *connector.Resource) { r.MaxProcesses = 4; r.MaxProcessesPerAgent = 1 })
	connectSession(t, s, nil)
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",` +
		`"capabilities":{},"clientInfo":{"name":"second","version":"1"}}}`
	resp, body, err := rpc(t, testContext(t), s.client, s.url, initialize, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := checkRPCError(t, resp, body, http.StatusServiceUnavailable, airmcp.CodeUpstreamFailed)
	if !strings.Contains(msg, "agent spiffe://airlock.local/agent/alice already runs its maximum of 1") {
		t.Errorf("refusal = %q, want it to name the agent and its cap", msg)
	}
	bob := *s
	bob.client = httpClient(t, s.v.agentTLS("bob"))
	if got := pidOf(t, connectSession(t, &bob, nil)); got == 0 {
		t.Error("another agent got no process")
	}
}

func TestStdioManySessions(t *testing.T) {
	const sessions = 50
	s := stdioEnv(t, func(r *connector.Resource) { r.MaxProcesses = sessions })
	ctx := testContext(t)

	// All sessions are open at once, so distinct process IDs mean
	// distinct processes.
	open := make([]*mcp.ClientSession, sessions)
	pids := make([]int, sessions)
	errs := make([]error, sessions)
	limit := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			limit <- struct{}{}
			defer func() { <-limit }()
			cs, err := dialSession(ctx, s, nil)
			if err != nil {
				errs[i] = err
				return
			}
			open[i] = cs
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "pid"})
			if err != nil {
				errs[i] = err
				return
			}
			pids[i], errs[i] = strconv.Atoi(textOf(t, res))
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("session %d: %v", i, err)
			continue
		}
		if seen[pids[i]] {
			t.Errorf("process %d serves two sessions", pids[i])
		}
		seen[pids[i]] = true
	}

	for _, cs := range open {
		if cs != nil {
			wg.Go(func() {
				if err := cs.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
			})
		}
	}
	wg.Wait()
	for pid := range seen {
		waitFor(t, fmt.Sprintf("process %d to be reaped", pid), func() bool { return reaped(pid) })
	}
}

func TestStdioIdleTimeout(t *testing.T) {
	s := stdioEnv(t, func(r *connector.Resource) { r.IdleTimeout = 300 * time.Millisecond })
	cs := connectSession(t, s, nil)
	pid, sid := pidOf(t, cs), cs.ID()
	// The client's open GET stream does not keep the session alive.
	waitFor(t, fmt.Sprintf("idle process %d to be reaped", pid), func() bool { return reaped(pid) })
	checkSessionGone(t, s, sid)
}

func TestStdioConnectorStopStopsProcesses(t *testing.T) {
	s := stdioEnv(t, nil)
	a := connectSession(t, s, nil)
	b := connectSession(t, s, nil)
	pa, pb := pidOf(t, a), pidOf(t, b)
	s.run.stop()
	// The connector returns only once its children are reaped.
	for _, pid := range []int{pa, pb} {
		if !reaped(pid) {
			t.Errorf("process %d outlived its connector", pid)
		}
	}
}

// TestStdioStateless is the go-sdk client on MCP 2026-07-28: without a
// session, every request gets a process of its own.
func TestStdioStateless(t *testing.T) {
	s := stdioEnv(t, nil)
	ctx := testContext(t)
	progress := make(chan *mcp.ProgressNotificationParams, 16)
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params
		},
	})
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.url, HTTPClient: s.client, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" || cs.ID() != "" {
		t.Fatalf("protocol %q, session %q; want 2026-07-28 without a session", v, cs.ID())
	}

	p1, p2 := pidOf(t, cs), pidOf(t, cs)
	if p1 == p2 {
		t.Errorf("two stateless requests shared process %d", p1)
	}
	if got := textOf(t, call(t, cs, "echo", map[string]any{"text": "stateless"})); got != "stateless" {
		t.Errorf("echo = %q", got)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{
		Name:      "slow",
		Arguments: map[string]any{"steps": 2, "delay_ms": 10},
		Meta:      mcp.Meta{"progressToken": "s2"},
	})
	if err != nil || textOf(t, res) != "counted to 2" {
		t.Fatalf("slow = %v, %v", res, err)
	}
	for i := 1; i <= 2; i++ {
		select {
		case p := <-progress:
			if p.ProgressToken != "s2" {
				t.Errorf("progress token = %v, want s2", p.ProgressToken)
			}
		case <-ctx.Done():
			t.Fatalf("progress notification %d of a stateless call never arrived", i)
		}
	}
	for _, pid := range []int{p1, p2} {
		waitFor(t, fmt.Sprintf("process %d to be reaped", pid), func() bool { return reaped(pid) })
	}
}

// TestStdioSessionlessOldProtocol: a request without a session on a
// revision before 2026-07-28 starts no process; the client must
// initialize first.
func TestStdioSessionlessOldProtocol(t *testing.T) {
	s := stdioEnv(t, nil)
	resp, body, err := rpc(t, testContext(t), s.client, s.url, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		http.Header{"Mcp-Protocol-Version": {"2025-11-25"}})
	if err != nil {
		t.Fatal(err)
	}
	msg := checkRPCError(t, resp, body, http.StatusBadRequest, airmcp.CodeInvalidRequest)
	if !strings.Contains(msg, "Mcp-Session-Id required") {
		t.Errorf("refusal = %q, want it to ask for a session", msg)
	}
	started := map[string]string{"resource": "tools", "msg": "stdio process started"}
	if n := len(s.logs.records(started)); n != 0 {
		t.Errorf("%d processes started for a request that needs a session", n)
	}
}

// filesystemServerVersion is the version of the npm package
// @modelcontextprotocol/server-filesystem the test installs.
const filesystemServerVersion = "2026.8.31"

// installFilesystemServer installs the reference filesystem server from
// npm into the user's cache, once, and returns its entry point.
func installFilesystemServer(t *testing.T) (node, entry string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the third-party stdio server test")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: skipping the third-party stdio server test")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no cache folder for the npm package: %v", err)
	}
	prefix := filepath.Join(cache, "airlock-test", "npm-server-filesystem-"+filesystemServerVersion)
	entry = filepath.Join(prefix, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	if _, err := os.Stat(entry); err == nil {
		return node, entry
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", prefix, "--no-audit", "--no-fund",
		"@modelcontextprotocol/server-filesystem@"+filesystemServerVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install of @modelcontextprotocol/server-filesystem failed (no network?): %v\n%s", err, out)
	}
	if _, err := os.Stat(entry); err != nil {
		t.Skipf("npm installed no %s: %v", entry, err)
	}
	return node, entry
}

func TestStdioThirdPartyFilesystem(t *testing.T) {
	node, entry := installFilesystemServer(t)
	// The server resolves symlinks, so give it the real path.
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from a private folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := stdioEnv(t, func(r *connector.Resource) {
		r.Command = node
		r.Args = []string{entry, dir}
	})
	cs := connectSession(t, s, nil)

	res, err := cs.ListTools(testContext(t), nil)
	if err != nil {
		t.Fatalf("ListTools() = %v", err)
	}
	names := map[string]bool{}
	for _, tool := range res.Tools {
		names[tool.Name] = true
	}
	for _, want := range []string{"read_text_file", "list_directory"} {
		if !names[want] {
			t.Errorf("ListTools() lacks %q", want)
		}
	}
	if got := textOf(t, call(t, cs, "list_directory", map[string]any{"path": dir})); !strings.Contains(got, "hello.txt") {
		t.Errorf("list_directory = %q, want hello.txt in it", got)
	}
	got := textOf(t, call(t, cs, "read_text_file", map[string]any{"path": filepath.Join(dir, "hello.txt")}))
	if got != "hello from a private folder\n" {
		t.Errorf("read_text_file = %q", got)
	}
}
