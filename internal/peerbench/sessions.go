package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/internal/localrun"
)

// sessionServer is an MCP server with sessions (2025-11-25), whose
// sessions each keep a standing GET stream open as agents do. Adding a
// tool tells every session tools/list_changed on that stream, which shows
// that the streams are all alive end to end.
type sessionServer struct {
	srv     *mcp.Server
	handler http.Handler
	tools   atomic.Int64
}

func newSessionServer() *sessionServer {
	impl := &mcp.Implementation{Name: "peerbench-sessions", Version: "1.0.0"}
	tools := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{ListChanged: true}}
	s := &sessionServer{srv: mcp.NewServer(impl, &mcp.ServerOptions{Capabilities: tools})}
	s.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.srv }, nil)
	return s
}

// broadcast adds a tool, so that every session is told tools/list_changed.
func (s *sessionServer) broadcast() {
	name := "added-" + strconv.FormatInt(s.tools.Add(1), 10)
	s.srv.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
}

const sessionVersion = "2025-11-25"

// session is one open MCP session with its standing GET stream.
type session struct {
	id     string
	stream io.ReadCloser
}

// sessionClient opens sessions on one endpoint.
type sessionClient struct {
	client *http.Client
	url    string
	host   string // Host header, for frp's HTTP mode
}

func (c *sessionClient) request(
	ctx context.Context,
	method, sid, body string,
) (*http.Response, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url, r)
	if err != nil {
		return nil, err
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if method == http.MethodGet {
		req.Header.Set("Accept", "text/event-stream")
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", sessionVersion)
	}
	return c.client.Do(req)
}

// open initializes a session and opens its GET stream; every
// tools/list_changed that arrives on it is counted in heard.
func (c *sessionClient) open(ctx context.Context, heard *atomic.Int64) (*session, error) {
	resp, err := c.request(ctx, http.MethodPost, "", `{"jsonrpc":"2.0","id":1,"method":"initialize",`+
		`"params":{"protocolVersion":"`+sessionVersion+`","capabilities":{},`+
		`"clientInfo":{"name":"peerbench","version":"1.0.0"}}}`)
	if err != nil {
		return nil, err
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		return nil, fmt.Errorf("initialize: status %d, session %q: %.200s", resp.StatusCode, sid, data)
	}
	initialized := `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	resp, err = c.request(ctx, http.MethodPost, sid, initialized)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: status %d", resp.StatusCode)
	}
	resp, err = c.request(ctx, http.MethodGet, sid, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET stream: status %d", resp.StatusCode)
	}
	go func() {
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if strings.Contains(lines.Text(), "notifications/tools/list_changed") {
				heard.Add(1)
			}
		}
	}()
	return &session{id: sid, stream: resp.Body}, nil
}

// close ends the stream and the session.
func (c *sessionClient) close(ctx context.Context, s *session) {
	s.stream.Close()
	if resp, err := c.request(ctx, http.MethodDelete, s.id, ""); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// sessionsRow is what opening n sessions with their streams did.
type sessionsRow struct {
	name     string
	n        int
	open     time.Duration // to open all n, 64 at a time
	rss      int64         // growth of the carrying processes' memory, bytes
	heard    int64         // sessions told of the broadcast
	failed   int
	firstErr error
}

// measureSessions opens n sessions with their GET streams through c, 64
// at a time, measures the growth of the memory of the processes that
// carry them, broadcasts one change to all of them and counts the
// sessions it reached, then closes them.
func measureSessions(ctx context.Context, name string, c *sessionClient, pids func() []int,
	srv *sessionServer, n int) sessionsRow {
	r := sessionsRow{name: name, n: n}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var heard atomic.Int64
	before := rssOf(pids())
	start := time.Now()
	sessions := make([]*session, n)
	var mu sync.Mutex
	inParallel(n, 64, func(i int) {
		s, err := c.open(ctx, &heard)
		if err == nil {
			sessions[i] = s
			return
		}
		mu.Lock()
		defer mu.Unlock()
		r.failed++
		if r.firstErr == nil {
			r.firstErr = err
		}
	})
	r.open = time.Since(start)
	time.Sleep(time.Second) // let the last streams settle before measuring
	r.rss = rssOf(pids()) - before
	srv.broadcast()
	want := int64(n - r.failed)
	localrun.Await(30*time.Second, 50*time.Millisecond, func() bool { return heard.Load() >= want })
	r.heard = heard.Load()
	inParallel(n, 64, func(i int) {
		if sessions[i] != nil {
			c.close(ctx, sessions[i])
		}
	})
	return r
}

// inParallel calls fn for every index below n, with that many workers.
func inParallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// ok reports whether every session opened and heard the broadcast.
func (r sessionsRow) ok() bool { return r.failed == 0 && r.heard == int64(r.n) }

// rssOf returns the private resident memory of the processes (RssAnon:
// heap, stacks and the runtime's own; not the pages of the program file,
// which processes of one program share), in bytes (Linux; 0 elsewhere).
func rssOf(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				kb := strings.TrimSuffix(strings.TrimSpace(rest), " kB")
				n, _ := strconv.ParseInt(kb, 10, 64)
				total += n << 10
			}
		}
	}
	return total
}
