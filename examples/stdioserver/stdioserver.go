// Package stdioserver is a small MCP server for the stdio transport, the
// example of a command resource: the connector starts one process of it
// per MCP session and bridges it to Streamable HTTP.
//
// Its tools make that visible: pid names the process (one per session),
// add_note and list_notes keep notes in the process's memory (so they
// never leak between sessions), slow reports progress, ask_user puts a
// question to the client (elicitation, a server-to-client request), and
// crash makes the process exit. echo answers with its input.
//
// Run it with cmd/stdioserver.
package stdioserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Name is the implementation name the server reports during initialization.
const Name = "airlock-stdio-example"

// Version is the implementation version the server reports.
const Version = "0.1.0"

// New returns the server with all its tools. Its notes live as long as
// the returned server.
func New() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: Name, Title: "Airlock stdio example", Version: Version}, nil)
	n := &notes{}
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "echo",
		Description: "Reply with the given text.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, echo)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "pid",
		Description: "Reply with the process ID of this server process; every MCP session has a process of its own.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, pid)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "add_note",
		Description: "Keep a note in this process's memory. Replies \"saved note <title>\".",
		Annotations: &mcp.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(false)},
	}, n.add)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "list_notes",
		Description: "List the titles of the notes kept by this process, one per line, sorted.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, n.list)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "slow",
		Description: "Count to steps, one step every delay_ms milliseconds, with a progress notification per step when the call has a progress token.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, slow)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "ask_user",
		Description: "Ask the client's user a question (elicitation/create with one string field, \"answer\") and reply with the answer.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, askUser)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "crash",
		Description: "Exit the process at once with the given status (default 3), without answering.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: new(true)},
	}, crash)
	return srv
}

type textInput struct {
	Text string `json:"text" jsonschema:"text to send back"`
}

func echo(_ context.Context, _ *mcp.CallToolRequest, in textInput) (*mcp.CallToolResult, any, error) {
	return text(in.Text), nil, nil
}

func pid(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
	return text(fmt.Sprint(os.Getpid())), nil, nil
}

// notes are the notes of one process.
type notes struct {
	// mu guards byTitle.
	mu      sync.Mutex
	byTitle map[string]string
}

type noteInput struct {
	Title string `json:"title" jsonschema:"title of the note"`
	Body  string `json:"body" jsonschema:"text of the note"`
}

func (n *notes) add(_ context.Context, _ *mcp.CallToolRequest, in noteInput) (*mcp.CallToolResult, any, error) {
	if in.Title == "" {
		return nil, nil, errors.New("add_note: title is empty")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byTitle == nil {
		n.byTitle = map[string]string{}
	}
	n.byTitle[in.Title] = in.Body
	return text("saved note " + in.Title), nil, nil
}

func (n *notes) list(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	titles := make([]string, 0, len(n.byTitle))
	for t := range n.byTitle {
		titles = append(titles, t)
	}
	slices.Sort(titles)
	return text(strings.Join(titles, "\n")), nil, nil
}

type slowInput struct {
	Steps   int `json:"steps" jsonschema:"how many steps to count, 1 to 100"`
	DelayMS int `json:"delay_ms" jsonschema:"milliseconds between steps, 0 to 10000"`
}

func slow(ctx context.Context, req *mcp.CallToolRequest, in slowInput) (*mcp.CallToolResult, any, error) {
	if in.Steps < 1 || in.Steps > 100 || in.DelayMS < 0 || in.DelayMS > 10000 {
		return nil, nil, errors.New("slow: steps must be 1 to 100 and delay_ms 0 to 10000")
	}
	token := req.Params.GetProgressToken()
	for i := 1; i <= in.Steps; i++ {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(time.Duration(in.DelayMS) * time.Millisecond):
		}
		if token == nil {
			continue
		}
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token,
			Progress:      float64(i),
			Total:         float64(in.Steps),
			Message:       fmt.Sprintf("step %d of %d", i, in.Steps),
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return text(fmt.Sprintf("counted to %d", in.Steps)), nil, nil
}

type askInput struct {
	Question string `json:"question" jsonschema:"question to put to the user"`
}

func askUser(ctx context.Context, req *mcp.CallToolRequest, in askInput) (*mcp.CallToolResult, any, error) {
	res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
		Message: in.Question,
		RequestedSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"answer": map[string]any{"type": "string"}},
			"required":   []string{"answer"},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ask_user: asking the client: %w", err)
	}
	if res.Action != "accept" {
		return text("the user chose " + res.Action), nil, nil
	}
	return text(fmt.Sprint(res.Content["answer"])), nil, nil
}

type crashInput struct {
	Status int `json:"status,omitempty" jsonschema:"exit status, 1 to 125; default 3"`
}

func crash(_ context.Context, _ *mcp.CallToolRequest, in crashInput) (*mcp.CallToolResult, any, error) {
	status := in.Status
	if status < 1 || status > 125 {
		status = 3
	}
	fmt.Fprintf(os.Stderr, "crashing on request with status %d\n", status)
	os.Exit(status)
	return nil, nil, nil
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
