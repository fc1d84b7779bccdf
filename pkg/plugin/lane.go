package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
)

// Enrich and Decide calls travel on lanes: long-lived gRPC streams that
// carry one call at a time, a request and then its answer. A lane spares
// each call what a unary gRPC call costs on top of its message (a new
// stream, its headers and trailers, and a handler goroutine in the
// plugin), which is most of a call's time between two processes on the
// same machine.

// laneRequest is one call on a lane.
type laneRequest struct {
	// Seq numbers the calls of a lane from 1; the answer carries it back,
	// so that a plugin that answers twice, or late, cannot have its answer
	// taken for the next call's.
	Seq uint64 `json:"seq"`
	// Method is "Enrich" or "Decide".
	Method string `json:"method"`
	// TimeoutMS is what is left of the edge's deadline for the call; the
	// plugin's context ends with it.
	TimeoutMS int64          `json:"timeout_ms,omitempty"`
	Input     map[string]any `json:"input"`
	Policy    PolicyDecision `json:"policy"`
}

// laneResponse is a call's answer: Context for Enrich, Verdict for
// Decide, or Error.
type laneResponse struct {
	Seq     uint64         `json:"seq"`
	Context map[string]any `json:"context,omitempty"`
	Verdict *Verdict       `json:"verdict,omitempty"`
	Error   string         `json:"error,omitempty"`
}

const laneStream = "Calls"

var laneDesc = grpc.StreamDesc{
	StreamName:    laneStream,
	Handler:       serveLane,
	ServerStreams: true,
	ClientStreams: true,
}

// serveLane answers the calls of one lane, in order, until the edge
// closes it.
func serveLane(srv any, stream grpc.ServerStream) error {
	p := srv.(impl)
	for {
		var req laneRequest
		if err := stream.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		ctx, cancel := stream.Context(), context.CancelFunc(func() {})
		if req.TimeoutMS > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMS)*time.Millisecond)
		}
		resp := answer(ctx, p, &req)
		resp.Seq = req.Seq
		cancel()
		if err := stream.SendMsg(resp); err != nil {
			return err
		}
	}
}

func answer(ctx context.Context, p impl, req *laneRequest) *laneResponse {
	var resp laneResponse
	var err error
	switch req.Method {
	case "Enrich":
		resp.Context, err = p.Enrich(ctx, req.Input)
	case "Decide":
		var v Verdict
		v, err = p.Decide(ctx, req.Input, req.Policy)
		resp.Verdict = &v
	default:
		err = fmt.Errorf("unknown method %q", req.Method)
	}
	if err != nil {
		return &laneResponse{Error: err.Error()}
	}
	return &resp
}

// lane is the edge's end of one stream.
type lane struct {
	stream grpc.ClientStream
	cancel context.CancelFunc
	calls  uint64 // calls made on it so far
}

// maxIdleLanes is how many idle lanes a client keeps for the next calls;
// more are opened when more calls run at once, and closed after.
const maxIdleLanes = 64

// take returns an idle lane, or opens one. The lane outlives the call,
// but ctx, the call's, bounds the opening: a plugin that does not accept
// the stream costs the call its deadline, not more.
func (c *client) take(ctx context.Context) (*lane, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		l := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	laneCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	stream, err := c.conn.NewStream(
		laneCtx,
		&laneDesc,
		"/"+serviceName+"/"+laneStream,
		grpc.CallContentSubtype("json"),
	)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &lane{stream: stream, cancel: cancel}, nil
}

// put keeps a lane whose last call ended cleanly for the next call.
func (c *client) put(l *lane) {
	c.mu.Lock()
	if !c.closed && len(c.idle) < maxIdleLanes {
		c.idle = append(c.idle, l)
		l = nil
	}
	c.mu.Unlock()
	if l != nil {
		l.cancel()
	}
}

// close ends the idle lanes; lanes in use end with their call.
func (c *client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, l := range idle {
		l.cancel()
	}
}

// exchange makes one call on a lane. A lane whose call failed or outlived
// ctx is in an unknown state, so it is closed, never reused.
func (c *client) exchange(ctx context.Context, req *laneRequest) (*laneResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("calling %s: %w", req.Method, err)
	}
	l, err := c.take(ctx)
	if err != nil {
		return nil, fmt.Errorf("calling %s: opening a stream: %w", req.Method, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		req.TimeoutMS = max(time.Until(deadline).Milliseconds(), 1)
	}
	l.calls++
	req.Seq = l.calls
	stop := context.AfterFunc(ctx, l.cancel)
	var resp laneResponse
	err = l.stream.SendMsg(req)
	if err == nil {
		err = l.stream.RecvMsg(&resp)
	}
	if err == nil && resp.Seq != req.Seq {
		err = fmt.Errorf("the plugin answered call %d of its lane, not call %d", resp.Seq, req.Seq)
	}
	if stopped := stop(); !stopped || err != nil {
		// A deadline that fired is the reason even if an answer came.
		l.cancel()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("calling %s: %w", req.Method, err)
	}
	c.put(l)
	if resp.Error != "" {
		return nil, fmt.Errorf("calling %s: the plugin answered: %s", req.Method, resp.Error)
	}
	return &resp, nil
}
