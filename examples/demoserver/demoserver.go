// Package demoserver is the demo "internal MCP server" that Airlock exposes
// through its zero-trust tunnel.
//
// The quickstart (airlock dev) runs it in-process, and integration tests
// drive it through the Airlock proxy with the MCP go-sdk client. It is small,
// but it exercises the MCP features a proxy has to carry faithfully: typed
// tools with structured output, tool errors, large responses, progress
// notifications on the request stream, cancellation, server-to-client
// requests (elicitation or sampling), notifications on the standalone GET
// stream, resources, resource templates and prompts.
//
// Tools: add_note, list_notes, read_note, read_file, echo, blob, count, wait,
// ask and announce. Resources: demo://readme and the note://{title}
// template. Prompt: summarize_notes.
package demoserver

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Name is the implementation name the server reports during initialization.
const Name = "airlock-demo"

// Version is the implementation version the server reports during
// initialization.
const Version = "0.1.0"

// Options configures the demo server. Zero value: notes in memory, no sandbox
// (read_file then returns a tool error).
type Options struct {
	// SandboxDir is the folder read_file may read from. Paths are resolved
	// inside it; escapes ("..", absolute paths, symlinks leaving it) are
	// refused with a tool error. Empty disables read_file.
	SandboxDir string

	// Logger receives the server's diagnostic logs. Nil discards them.
	Logger *slog.Logger

	// AllowAnyHost turns off the SDK's DNS-rebinding protection in Handler,
	// which refuses requests that reach a loopback listener with a
	// non-loopback Host header. Set it when a proxy in front of the server
	// forwards the public Host header to a loopback address.
	AllowAnyHost bool

	// JSONResponse makes Handler answer POSTs with one application/json
	// body instead of an SSE stream.
	JSONResponse bool

	// MaxRequestBodyBytes caps request bodies in Handler. Zero keeps the
	// SDK's default (4 MiB); negative removes the cap.
	MaxRequestBodyBytes int64
}

// demo holds the state shared by all handlers of one server.
type demo struct {
	notes   *noteStore
	sandbox string
	stats   *Stats
}

// New returns the demo MCP server with all its tools, resources and prompts.
func New(opts Options) *mcp.Server {
	srv, _ := NewWithStats(opts)
	return srv
}

// NewWithStats is like New but also returns the counters the server updates
// as it handles tool calls.
func NewWithStats(opts Options) (*mcp.Server, *Stats) {
	d := &demo{
		notes:   newNoteStore(),
		sandbox: opts.SandboxDir,
		stats:   newStats(),
	}
	srv := mcp.NewServer(
		&mcp.Implementation{Name: Name, Title: "Airlock demo server", Version: Version},
		&mcp.ServerOptions{
			Instructions: instructions,
			Logger:       loggerOrDiscard(opts.Logger),
		},
	)
	srv.AddReceivingMiddleware(countToolCalls(d.stats))
	d.addNoteTools(srv)
	d.addFileTools(srv)
	d.addLoadTools(srv)
	d.addInteractionTools(srv)
	d.addResources(srv)
	d.addPrompts(srv)
	return srv, d.stats
}

// Handler returns a Streamable HTTP handler serving a new demo server.
// When stateless is true the handler uses the SDK's stateless mode: no
// session IDs, no standalone GET stream and no server-to-client requests.
func Handler(opts Options, stateless bool) http.Handler {
	h, _ := HandlerWithStats(opts, stateless)
	return h
}

// HandlerWithStats is like Handler but also returns the server's counters.
func HandlerWithStats(opts Options, stateless bool) (http.Handler, *Stats) {
	srv, stats := NewWithStats(opts)
	h := mcp.NewStreamableHTTPHandler(
		func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{
			Stateless: stateless,
			// Lets a client that lost an SSE stream resume it with
			// Last-Event-ID (MCP Streamable HTTP, resumability).
			EventStore: eventStore(stateless),
			// Stateless requests on the 2026-07-28 protocol have no
			// notifications/cancelled to rely on: tie the tool call to the
			// HTTP request so that a client hanging up cancels it.
			PropagateRequestCancellation: true,
			DisableLocalhostProtection:   opts.AllowAnyHost,
			JSONResponse:                 opts.JSONResponse,
			MaxRequestBodyBytes:          opts.MaxRequestBodyBytes,
			Logger:                       loggerOrDiscard(opts.Logger),
		},
	)
	return h, stats
}

// eventStore keeps recent SSE events of sessionful servers in memory, so
// that streams can be resumed; stateless servers have nothing to resume.
func eventStore(stateless bool) mcp.EventStore {
	if stateless {
		return nil
	}
	return mcp.NewMemoryEventStore(nil)
}

// countToolCalls returns receiving middleware that counts tools/call
// requests in stats.
func countToolCalls(stats *Stats) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method == "tools/call" {
				stats.calls.Add(1)
			}
			return next(ctx, method, req)
		}
	}
}

// loggerOrDiscard returns l, or a logger that drops everything if l is nil.
func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// textResult returns a tool result holding a single text content.
func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// instructions is sent to clients during initialization.
const instructions = `Airlock demo server. Save and read notes (add_note, list_notes, read_note,
note://{title}), read files from a sandbox (read_file), and exercise protocol
features: echo, blob (large bodies), count (progress), wait (cancellation),
ask (elicitation or sampling) and announce (log notification on the
standalone stream).`
