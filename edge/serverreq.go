package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// serverMessage is a request the server sends the agent on an SSE stream
// (sampling/createMessage, elicitation/create, roots/list, ...).
type serverMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// decideServerRequest asks the policy whether the server may put this
// request to the agent (input.mcp.direction "server_to_client"). A denied
// request never reaches the agent; the server gets a JSON-RPC error for it
// in the agent's place, so it does not wait for an answer that will not
// come.
func (e *Edge) decideServerRequest(
	ctx context.Context,
	r *http.Request,
	x *exchange,
	l *link,
	m serverMessage,
) bool {
	input := e.policyInput(r, x)
	params := map[string]any{}
	json.Unmarshal(m.Params, &params)
	var id any
	json.Unmarshal(m.ID, &id)
	input["mcp"] = map[string]any{
		"version":   r.Header.Get("Mcp-Protocol-Version"),
		"session":   r.Header.Get(headerSession),
		"kind":      kindRequest,
		"direction": "server_to_client",
		"method":    m.Method,
		"id":        id,
		"params":    params,
		"listing":   false,
	}
	start := time.Now()
	d, err := e.policy.Eval(ctx, input)
	allowed := err == nil && d.Allowed()
	msg := d.Message()
	if err != nil {
		e.metrics.policyErrors.Inc()
		msg = "the policy could not decide this request, so it is denied"
	}
	sx := *x
	sx.method, sx.target, sx.kind, sx.params = m.Method, "", kindRequest, nil
	allowed, msg = e.audit(r, &sx, "server_to_client", allowed, msg, d.Revision, time.Since(start))
	if allowed {
		return true
	}
	answer := mcp.ErrorBody(
		m.ID,
		mcp.CodeDenied,
		"denied by policy: "+msg,
		map[string]string{"request_id": x.id},
	)
	// The answer goes out on its own; it gets copies of what it needs,
	// since the exchange goes on changing.
	ax := *x
	ax.method, ax.target, ax.kind = "", "", kindResponse
	hdr := http.Header{}
	for _, k := range []string{headerSession, "Mcp-Protocol-Version"} {
		if v := r.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	go e.answerServer(context.WithoutCancel(ctx), hdr, &ax, l, answer)
	return false
}

// answerServer POSTs the agent's answer to a server request through the
// tunnel, with the session of the stream it came on.
func (e *Edge) answerServer(
	ctx context.Context,
	session http.Header,
	ax *exchange,
	l *link,
	body []byte,
) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	str, err := l.conn.OpenStreamSync(ctx)
	if err != nil {
		e.logger.WarnContext(ctx, "answering a denied server request failed",
			logkey.RequestID, ax.id, logkey.Error, err)
		return
	}
	defer abandon(str)
	hdr := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json, text/event-stream"},
	}
	for k, v := range session {
		hdr[k] = v
	}
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return
	}
	post.Header = hdr
	out, err := e.tunnelRequest(post, ax, body)
	if err == nil {
		err = writeRequest(str, ax, out)
	}
	if err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(bufio.NewReader(str), out); err == nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		e.logger.WarnContext(ctx, "answering a denied server request failed",
			logkey.RequestID, ax.id, logkey.Error, err)
	}
}
