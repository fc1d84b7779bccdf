package demoserver

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const (
	// maxBlobBytes is the largest body blob returns.
	maxBlobBytes = 16 << 20
	// maxCount is the largest n count accepts.
	maxCount = 1000
	// maxDelay is the longest pause count accepts between notifications.
	maxDelay = time.Minute
	// maxWait is the longest wait accepts.
	maxWait = time.Hour
)

type echoInput struct {
	Text string `json:"text" jsonschema:"text to send back"`
}

type blobInput struct {
	Size int `json:"size" jsonschema:"number of bytes to return, at most 16 MiB"`
}

type countInput struct {
	N       int `json:"n" jsonschema:"number of progress notifications to send, at most 1000"`
	DelayMS int `json:"delay_ms,omitempty" jsonschema:"milliseconds to pause before each notification, at most 60000"`
}

type waitInput struct {
	Seconds float64 `json:"seconds" jsonschema:"how long to wait, in seconds, at most 3600"`
}

// addLoadTools registers echo, blob, count and wait.
func (d *demo) addLoadTools(srv *mcp.Server) {
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "echo",
		Description: "Return the text unchanged. Cheap; meant for latency benchmarks.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, echo)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "blob",
		Description: "Return one text content of exactly size bytes (the letter a repeated), at most 16 MiB. " +
			"Near the limit, raise the client's maximum SSE event size: the JSON-RPC envelope adds a few bytes.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, blob)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "count",
		Description: "Count to n, pausing delay_ms before each step. When the request's _meta carries a " +
			"progressToken, each step sends a notifications/progress on the request's stream. " +
			"Stops as soon as the call is cancelled.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, count)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "wait",
		Description: "Block for the given number of seconds, or until the call is cancelled. When the request's " +
			"_meta carries a progressToken, one progress notification (progress 0) announces that the wait began. " +
			"Cancelled waits are counted by the server, to check that cancellation reaches it.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, d.wait)
}

func echo(_ context.Context, _ *mcp.CallToolRequest, in echoInput) (*mcp.CallToolResult, any, error) {
	return textResult(in.Text), nil, nil
}

func blob(_ context.Context, _ *mcp.CallToolRequest, in blobInput) (*mcp.CallToolResult, any, error) {
	if in.Size < 0 || in.Size > maxBlobBytes {
		return nil, nil, fmt.Errorf("make blob: size %d is outside 0 to %d", in.Size, maxBlobBytes)
	}
	return textResult(strings.Repeat("a", in.Size)), nil, nil
}

func count(ctx context.Context, req *mcp.CallToolRequest, in countInput) (*mcp.CallToolResult, any, error) {
	if in.N < 0 || in.N > maxCount {
		return nil, nil, fmt.Errorf("count: n %d is outside 0 to %d", in.N, maxCount)
	}
	if in.DelayMS < 0 || int64(in.DelayMS) > maxDelay.Milliseconds() {
		return nil, nil, fmt.Errorf("count: delay_ms %d is outside 0 to %d", in.DelayMS, maxDelay.Milliseconds())
	}
	delay := time.Duration(in.DelayMS) * time.Millisecond
	token := req.Params.GetProgressToken()
	for i := 1; i <= in.N; i++ {
		if err := pause(ctx, delay); err != nil {
			return nil, nil, fmt.Errorf("count: %w", err)
		}
		if err := notifyProgress(ctx, req, token, i, in.N); err != nil {
			return nil, nil, err
		}
	}
	return textResult("counted to " + strconv.Itoa(in.N)), nil, nil
}

// notifyProgress reports step i of n against token. It does nothing without
// a token. The request context routes the notification to the stream of the
// tools/call request.
func notifyProgress(ctx context.Context, req *mcp.CallToolRequest, token any, i, n int) error {
	if token == nil {
		return nil
	}
	err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
		ProgressToken: token,
		Progress:      float64(i),
		Total:         float64(n),
		Message:       fmt.Sprintf("%d of %d", i, n),
	})
	if err != nil {
		return fmt.Errorf("send progress: %w", err)
	}
	return nil
}

func (d *demo) wait(ctx context.Context, req *mcp.CallToolRequest, in waitInput) (*mcp.CallToolResult, any, error) {
	if in.Seconds < 0 || in.Seconds > maxWait.Seconds() {
		return nil, nil, fmt.Errorf("wait: seconds %g is outside 0 to %g", in.Seconds, maxWait.Seconds())
	}
	if token := req.Params.GetProgressToken(); token != nil {
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Message: "waiting"})
		if err != nil {
			return nil, nil, fmt.Errorf("send progress: %w", err)
		}
	}
	if err := pause(ctx, time.Duration(in.Seconds*float64(time.Second))); err != nil {
		d.stats.recordCancelled()
		return nil, nil, fmt.Errorf("wait: %w", err)
	}
	return textResult(fmt.Sprintf("waited %g seconds", in.Seconds)), nil, nil
}

// pause blocks for d or until ctx is done, whichever comes first, and
// returns the context's error in the latter case.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
