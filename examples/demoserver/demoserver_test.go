package demoserver_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// testTimeout bounds every test; none should come close to it.
const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// serve starts h on a real HTTP server and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// connect opens a client session to url over Streamable HTTP.
func connect(t *testing.T, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "demoserver-test", Version: "1"}, opts)
	cs, err := client.Connect(testContext(t), &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// startSession serves a stateful demo server and connects a client to it.
func startSession(t *testing.T, opts demoserver.Options, clientOpts *mcp.ClientOptions) (*mcp.ClientSession, *demoserver.Stats) {
	t.Helper()
	h, stats := demoserver.HandlerWithStats(opts, false)
	return connect(t, serve(t, h), clientOpts), stats
}

// call calls a tool and fails the test on a protocol error. Tool errors are
// returned in the result.
func call(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

// callText calls a tool that must succeed and returns its text.
func callText(t *testing.T, cs *mcp.ClientSession, name string, args any) string {
	t.Helper()
	res := call(t, cs, name, args)
	if res.IsError {
		t.Fatalf("call %s: tool error: %s", name, text(res))
	}
	return text(res)
}

// callError calls a tool that must fail with a tool error containing want.
func callError(t *testing.T, cs *mcp.ClientSession, name string, args any, want string) {
	t.Helper()
	res := call(t, cs, name, args)
	if !res.IsError {
		t.Fatalf("call %s: got success %q, want a tool error", name, text(res))
	}
	if got := text(res); !strings.Contains(got, want) {
		t.Errorf("call %s: error %q does not contain %q", name, got, want)
	}
}

// text joins the text contents of res.
func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// receive returns the next value from ch, failing the test on timeout.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting on a channel")
		var zero T
		return zero
	}
}

func TestToolsListed(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	if got := cs.InitializeResult().ServerInfo; got.Name != "airlock-demo" || got.Version != "0.1.0" {
		t.Errorf("server info = %s %s, want airlock-demo 0.1.0", got.Name, got.Version)
	}
	res, err := cs.ListTools(testContext(t), nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	want := []string{"add_note", "announce", "ask", "blob", "count", "echo", "list_notes", "read_file", "read_note", "wait"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
}

func TestNotes(t *testing.T) {
	cs, stats := startSession(t, demoserver.Options{}, nil)

	res := call(t, cs, "add_note", map[string]any{"title": "shopping list", "body": "milk"})
	if got := text(res); got != "saved note shopping list" {
		t.Errorf("add_note text = %q", got)
	}
	if got, ok := res.StructuredContent.(map[string]any); !ok || got["title"] != "shopping list" || got["notes"] != 1.0 {
		t.Errorf("add_note structured output = %#v", res.StructuredContent)
	}
	callText(t, cs, "add_note", map[string]any{"title": "todo", "body": "ship airlock"})

	if got := callText(t, cs, "list_notes", map[string]any{}); got != "shopping list\ntodo" {
		t.Errorf("list_notes = %q", got)
	}
	if got := callText(t, cs, "read_note", map[string]any{"title": "todo"}); got != "ship airlock" {
		t.Errorf("read_note = %q", got)
	}
	callError(t, cs, "read_note", map[string]any{"title": "missing"}, `no note titled "missing"`)

	if got := stats.Calls(); got != 5 {
		t.Errorf("Calls() = %d, want 5", got)
	}
}

func TestNoteResourcesAndPrompt(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	ctx := testContext(t)
	callText(t, cs, "add_note", map[string]any{"title": "a/b c", "body": "odd title"})

	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: demoserver.NoteURI("a/b c")})
	if err != nil {
		t.Fatalf("read note resource: %v", err)
	}
	if got := rr.Contents[0].Text; got != "odd title" {
		t.Errorf("note resource text = %q", got)
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: demoserver.NoteURI("nope")}); err == nil {
		t.Error("reading a missing note resource succeeded")
	}

	rr, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: demoserver.ReadmeURI})
	if err != nil {
		t.Fatalf("read readme: %v", err)
	}
	if !strings.Contains(rr.Contents[0].Text, "Airlock demo server") {
		t.Errorf("readme = %q", rr.Contents[0].Text)
	}

	tr, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil {
		t.Fatalf("list resource templates: %v", err)
	}
	if len(tr.ResourceTemplates) != 1 || tr.ResourceTemplates[0].URITemplate != "note://{title}" {
		t.Errorf("resource templates = %v", tr.ResourceTemplates)
	}

	pr, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "summarize_notes", Arguments: map[string]string{"focus": "oddities"}})
	if err != nil {
		t.Fatalf("get prompt: %v", err)
	}
	msg := pr.Messages[0].Content.(*mcp.TextContent).Text
	if !strings.Contains(msg, "odd title") || !strings.Contains(msg, "oddities") {
		t.Errorf("prompt message = %q", msg)
	}
}

func TestReadFile(t *testing.T) {
	root := t.TempDir()
	sandbox := filepath.Join(root, "sandbox")
	writeFile(t, filepath.Join(root, "secret.txt"), "top secret")
	writeFile(t, filepath.Join(sandbox, "hello.txt"), "hello")
	writeFile(t, filepath.Join(sandbox, "sub", "nested.txt"), "nested")
	writeFile(t, filepath.Join(sandbox, "big.txt"), strings.Repeat("x", 1<<20+1))
	symlinkErr := os.Symlink(filepath.Join(root, "secret.txt"), filepath.Join(sandbox, "link.txt"))

	cs, _ := startSession(t, demoserver.Options{SandboxDir: sandbox}, nil)

	if got := callText(t, cs, "read_file", map[string]any{"path": "hello.txt"}); got != "hello" {
		t.Errorf("read hello.txt = %q", got)
	}
	if got := callText(t, cs, "read_file", map[string]any{"path": "sub/../sub/nested.txt"}); got != "nested" {
		t.Errorf("read nested.txt = %q", got)
	}
	callError(t, cs, "read_file", map[string]any{"path": "../secret.txt"}, "escapes the sandbox")
	callError(t, cs, "read_file", map[string]any{"path": filepath.Join(root, "secret.txt")}, "escapes the sandbox")
	callError(t, cs, "read_file", map[string]any{"path": "missing.txt"}, "read file")
	callError(t, cs, "read_file", map[string]any{"path": "sub"}, "is a directory")
	callError(t, cs, "read_file", map[string]any{"path": "big.txt"}, "over the 1 MiB limit")
	if symlinkErr != nil {
		t.Logf("skipping symlink case: %v", symlinkErr)
		return
	}
	callError(t, cs, "read_file", map[string]any{"path": "link.txt"}, "escapes")
}

func TestReadFileWithoutSandbox(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	callError(t, cs, "read_file", map[string]any{"path": "hello.txt"}, "no sandbox")
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEchoAndBlob(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	if got := callText(t, cs, "echo", map[string]any{"text": "ping ✓"}); got != "ping ✓" {
		t.Errorf("echo = %q", got)
	}
	const size = 1<<20 + 7
	if got := callText(t, cs, "blob", map[string]any{"size": size}); len(got) != size || strings.Trim(got, "a") != "" {
		t.Errorf("blob returned %d bytes, want %d bytes of 'a'", len(got), size)
	}
	callError(t, cs, "blob", map[string]any{"size": 16<<20 + 1}, "outside")
}

func TestCountSendsProgress(t *testing.T) {
	progress := make(chan *mcp.ProgressNotificationParams, 10)
	cs, _ := startSession(t, demoserver.Options{}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params
		},
	})

	res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{
		Name:      "count",
		Arguments: map[string]any{"n": 5, "delay_ms": 1},
		Meta:      mcp.Meta{"progressToken": "count-1"},
	})
	if err != nil {
		t.Fatalf("call count: %v", err)
	}
	if got := text(res); got != "counted to 5" {
		t.Errorf("count = %q", got)
	}
	var steps []float64
	for range 5 {
		p := receive(t, progress)
		if p.ProgressToken != "count-1" || p.Total != 5 {
			t.Errorf("progress = %+v", p)
		}
		steps = append(steps, p.Progress)
	}
	slices.Sort(steps)
	if want := []float64{1, 2, 3, 4, 5}; !slices.Equal(steps, want) {
		t.Errorf("progress steps = %v, want %v", steps, want)
	}
}

func TestCountWithoutToken(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	if got := callText(t, cs, "count", map[string]any{"n": 3}); got != "counted to 3" {
		t.Errorf("count = %q", got)
	}
	callError(t, cs, "count", map[string]any{"n": 1001}, "outside")
}

func TestAskElicitation(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			if req.Params.Message != "favourite colour?" {
				return &mcp.ElicitResult{Action: "decline"}, nil
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
		},
	})
	if v := cs.InitializeResult().ProtocolVersion; v >= "2026-07-28" {
		t.Fatalf("stateful session negotiated %s; want a version with server-to-client requests", v)
	}
	res := call(t, cs, "ask", map[string]any{"question": "favourite colour?"})
	if res.IsError || text(res) != "blue" {
		t.Fatalf("ask = %q (error %t), want blue", text(res), res.IsError)
	}
	if got := res.StructuredContent.(map[string]any)["via"]; got != "elicitation" {
		t.Errorf("via = %v, want elicitation", got)
	}
	callError(t, cs, "ask", map[string]any{"question": "something else"}, "chose to decline")
}

func TestAskSampling(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			q := req.Params.Messages[0].Content.(*mcp.TextContent).Text
			return &mcp.CreateMessageResult{Role: "assistant", Model: "test", Content: &mcp.TextContent{Text: "answer to " + q}}, nil
		},
	})
	if got := callText(t, cs, "ask", map[string]any{"question": "life"}); got != "answer to life" {
		t.Errorf("ask = %q", got)
	}
}

func TestAskWithoutClientSupport(t *testing.T) {
	cs, _ := startSession(t, demoserver.Options{}, nil)
	callError(t, cs, "ask", map[string]any{"question": "anyone?"}, "neither elicitation nor sampling")
}

// sniffer wraps a handler and reports whether a marker string was written
// on the standalone GET stream or on a POST response.
type sniffer struct {
	next   http.Handler
	marker []byte
	onGET  chan struct{}
	onPOST atomic.Bool
}

func (s *sniffer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.next.ServeHTTP(&sniffWriter{ResponseWriter: w, sniff: func(p []byte) {
		if !bytes.Contains(p, s.marker) {
			return
		}
		if r.Method != http.MethodGet {
			s.onPOST.Store(true)
			return
		}
		select {
		case s.onGET <- struct{}{}:
		default:
		}
	}}, r)
}

// sniffWriter passes every write to sniff before writing it.
type sniffWriter struct {
	http.ResponseWriter
	sniff func([]byte)
}

func (w *sniffWriter) Write(p []byte) (int, error) {
	w.sniff(p)
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the Flusher underneath.
func (w *sniffWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestAnnounceUsesStandaloneStream(t *testing.T) {
	h, _ := demoserver.HandlerWithStats(demoserver.Options{}, false)
	sn := &sniffer{next: h, marker: []byte(`"notifications/message"`), onGET: make(chan struct{}, 1)}
	logs := make(chan *mcp.LoggingMessageParams, 1)
	cs := connect(t, serve(t, sn), &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			logs <- req.Params
		},
	})
	if err := cs.SetLoggingLevel(testContext(t), &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatalf("set logging level: %v", err)
	}

	callText(t, cs, "announce", map[string]any{"message": "maintenance at noon"})

	got := receive(t, logs)
	if got.Data != "maintenance at noon" || got.Level != "info" || got.Logger != demoserver.AnnounceLogger {
		t.Errorf("log notification = %+v", got)
	}
	receive(t, sn.onGET)
	if sn.onPOST.Load() {
		t.Error("the announcement was written on a POST response, want only the GET stream")
	}
}

func TestWaitCancelled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stateless bool
	}{{"stateful", false}, {"stateless", true}} {
		t.Run(tc.name, func(t *testing.T) { testWaitCancelled(t, tc.stateless) })
	}
}

// testWaitCancelled starts a long wait, cancels it once the server reports
// that it began, and checks that the server counted the cancellation.
func testWaitCancelled(t *testing.T, stateless bool) {
	h, stats := demoserver.HandlerWithStats(demoserver.Options{}, stateless)
	started := make(chan struct{}, 1)
	cs := connect(t, serve(t, h), &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			started <- struct{}{}
		},
	})
	ctx := testContext(t)

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx, &mcp.CallToolParams{
			Name:      "wait",
			Arguments: map[string]any{"seconds": 60},
			Meta:      mcp.Meta{"progressToken": "wait-1"},
		})
		errc <- err
	}()
	receive(t, started)
	cancel()
	if err := receive(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait returned %v, want context.Canceled", err)
	}
	if err := stats.AwaitCancelled(ctx, 1); err != nil {
		t.Fatalf("server never saw the cancellation: %v", err)
	}
	if got := callText(t, cs, "wait", map[string]any{"seconds": 0.001}); got != "waited 0.001 seconds" {
		t.Errorf("short wait = %q", got)
	}
	if got := stats.Cancelled(); got != 1 {
		t.Errorf("Cancelled() = %d, want 1", got)
	}
}

func TestStateless(t *testing.T) {
	h, stats := demoserver.HandlerWithStats(demoserver.Options{}, true)
	cs := connect(t, serve(t, h), &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "stateless yes"}}, nil
		},
	})

	if got := callText(t, cs, "echo", map[string]any{"text": "hi"}); got != "hi" {
		t.Errorf("echo = %q", got)
	}
	callText(t, cs, "add_note", map[string]any{"title": "kept", "body": "across requests"})
	if got := callText(t, cs, "read_note", map[string]any{"title": "kept"}); got != "across requests" {
		t.Errorf("read_note = %q", got)
	}
	if got := callText(t, cs, "ask", map[string]any{"question": "works?"}); got != "stateless yes" {
		t.Errorf("ask = %q", got)
	}
	callError(t, cs, "announce", map[string]any{"message": "x"}, "stateless")
	if stats.Calls() < 5 {
		t.Errorf("Calls() = %d, want at least 5", stats.Calls())
	}
}
