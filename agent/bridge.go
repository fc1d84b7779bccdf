package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// DefaultMaxMessage bounds one message the bridge relays, either way.
const DefaultMaxMessage = 16 << 20

// Header names of MCP's Streamable HTTP transport.
const (
	headerSession  = "Mcp-Session-Id"
	headerVersion  = "Mcp-Protocol-Version"
	headerLastID   = "Last-Event-ID"
	versionHeaders = "2026-07-28" // from this version on, messages carry Mcp-Method
)

// Bridge relays an MCP client that speaks stdio (newline-delimited
// JSON-RPC) to an Airlock MCP endpoint over Streamable HTTP. Every
// message from the client is one POST; answers, whether JSON or a
// server-sent event stream, go back to the client as lines, and so do the
// server's own requests and notifications (on the stream that answers a
// request, or on the standing GET stream the bridge opens after
// initialization). Messages pass through unchanged: the edge decides each
// one, and a denial reaches the client as the JSON-RPC error the edge
// sent. When the bridge cannot deliver a request, the client gets an
// error for it with code [mcp.CodeBridgeFailed] that says why; when the
// edge refuses the agent's credential, one with the edge's code.
type Bridge struct {
	// Endpoint is the MCP endpoint URL of the resource.
	Endpoint string
	// Client sends the requests with the agent's certificate and token
	// ([Agent.HTTPClient]).
	Client *http.Client
	// Logger receives what the client cannot be told; nil discards.
	Logger *slog.Logger
	// MaxMessage bounds one message; zero means [DefaultMaxMessage].
	MaxMessage int
	// RetryDelay is the first pause before the standing stream is opened
	// again after it ended; it doubles up to 30 times as long. Zero means
	// 500ms.
	RetryDelay time.Duration
}

// relay is one running Bridge.
type relay struct {
	b      *Bridge
	logger *slog.Logger
	max    int
	params paramBindings
	abort  context.CancelCauseFunc // ends Run: the client's output failed
	ending sync.WaitGroup          // DELETEs of replaced sessions

	// outMu serializes lines written to the client.
	outMu sync.Mutex
	out   io.Writer

	// mu guards the fields below.
	mu        sync.Mutex
	session   string
	version   string
	listening bool                          // the standing GET stream is open
	inflight  map[string]context.CancelFunc // requests by compact id
}

// envelope is what the bridge reads of a client's message.
type envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

func (e *envelope) isRequest() bool {
	return e.Method != "" && len(e.ID) > 0 && !isNull(e.ID)
}

// valid reports whether e is a JSON-RPC 2.0 request, notification or
// response.
func (e *envelope) valid() bool {
	if e.JSONRPC != "2.0" {
		return false
	}
	if e.Method != "" {
		return e.Result == nil && e.Error == nil && (e.ID == nil || validID(e.ID) != nil)
	}
	return validID(e.ID) != nil && (e.Result == nil) != (e.Error == nil)
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// line is one line from the client, or why reading stopped.
type line struct {
	data []byte
	err  error
}

// Run relays between in and out until in ends or ctx is done. At the end
// of in it waits for the answers still due; either way it then ends the
// session on the server (DELETE). It returns an error when in fails, or
// when writing to out fails (the client is gone). When ctx is done while
// a read from in is blocked, Run returns and leaves that read behind.
func (b *Bridge) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	r := &relay{b: b, logger: b.Logger, max: b.MaxMessage, out: out,
		inflight: map[string]context.CancelFunc{}}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.logger = r.logger.With(logkey.Component, "agent.bridge")
	if r.max <= 0 {
		r.max = DefaultMaxMessage
	}
	ctx, r.abort = context.WithCancelCause(ctx)
	defer r.abort(nil)
	listenCtx, stopListening := context.WithCancel(ctx)
	var calls, listener sync.WaitGroup
	defer func() {
		calls.Wait()
		stopListening()
		listener.Wait()
		r.endSession(context.WithoutCancel(ctx))
		r.ending.Wait()
	}()
	lines := make(chan line)
	go readLines(ctx, bufio.NewReaderSize(in, 64<<10), r.max, lines)
	for {
		var l line
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
				return cause
			}
			return nil
		case l = <-lines:
		}
		if len(bytes.TrimSpace(l.data)) > 0 {
			r.handle(ctx, listenCtx, l.data, &calls, &listener)
		}
		switch {
		case errors.Is(l.err, errTooLong):
			r.writeError(nil, mcp.CodeInvalidRequest,
				fmt.Sprintf("airlock bridge: a message over %d bytes, dropped", r.max))
			if !errors.Is(l.err, io.EOF) {
				continue
			}
			return nil
		case errors.Is(l.err, io.EOF):
			return nil
		case l.err != nil:
			return fmt.Errorf("reading from the MCP client: %w", l.err)
		}
	}
}

// readLines sends the lines of in until it fails or ctx is done.
func readLines(ctx context.Context, in *bufio.Reader, max int, lines chan<- line) {
	for {
		data, err := readMessageLine(in, max)
		select {
		case lines <- line{data, err}:
		case <-ctx.Done():
			return
		}
		if err != nil && (!errors.Is(err, errTooLong) || errors.Is(err, io.EOF)) {
			return
		}
	}
}

// errTooLong is a line from the client over the size limit.
var errTooLong = errors.New("message over the size limit")

// readMessageLine reads one line of up to max bytes. A longer line is
// read to its end and dropped, and reported as errTooLong.
func readMessageLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong && len(line)+len(chunk) > max {
			tooLong, line = true, nil
		}
		if !tooLong {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, errors.Join(errTooLong, err)
		}
		return line, err
	}
}

// handle sends one message from the client. Requests run concurrently;
// initialize, notifications and responses are sent in order, so that
// what the client sent after them reaches the server after them.
func (r *relay) handle(
	ctx, listenCtx context.Context,
	line []byte,
	calls, listener *sync.WaitGroup,
) {
	line = bytes.TrimSpace(line)
	var env envelope
	switch {
	case line[0] == '[':
		r.writeError(nil, mcp.CodeInvalidRequest,
			"airlock bridge: JSON-RPC batches are not accepted: send one message per line")
		return
	case !json.Valid(line) || json.Unmarshal(line, &env) != nil:
		r.writeError(nil, mcp.CodeParseError,
			"airlock bridge: the line is not one JSON-RPC message")
		return
	case !env.valid():
		r.writeError(validID(env.ID), mcp.CodeInvalidRequest, "airlock bridge: the line is "+
			`not a JSON-RPC 2.0 request, notification or response ("jsonrpc": "2.0" and a `+
			"method, or an id with a result or an error)")
		return
	}
	if !env.isRequest() || env.Method == "initialize" {
		r.post(ctx, line, &env)
		switch env.Method {
		case "notifications/initialized":
			r.startListening(listenCtx, listener)
		case "notifications/cancelled":
			r.cancelRequest(env.Params)
		}
		return
	}
	key := string(compact(env.ID))
	callCtx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.inflight[key] = cancel
	r.mu.Unlock()
	calls.Add(1)
	go func() {
		defer calls.Done()
		defer func() {
			r.mu.Lock()
			delete(r.inflight, key)
			r.mu.Unlock()
			cancel()
		}()
		r.post(callCtx, line, &env)
	}()
}

// validID returns id when a JSON-RPC error may carry it, nil otherwise.
func validID(id json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(id, &v) != nil {
		return nil
	}
	switch v.(type) {
	case string, float64:
		return id
	}
	return nil
}

// cancelRequest stops relaying the request a notifications/cancelled
// names: the client expects no answer to it any more.
func (r *relay) cancelRequest(params json.RawMessage) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil || p.RequestID == nil {
		return
	}
	r.mu.Lock()
	cancel := r.inflight[string(compact(p.RequestID))]
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// post sends one message and relays what answers it.
func (r *relay) post(ctx context.Context, msg []byte, env *envelope) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.b.Endpoint, bytes.NewReader(msg))
	if err != nil {
		r.fail(env, err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	r.setHeaders(req.Header, env)
	resp, err := r.b.Client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.failDo(env, err)
		}
		return
	}
	defer resp.Body.Close()
	if env.Method == "initialize" && resp.StatusCode/100 == 2 {
		r.newSession(ctx, resp.Header.Get(headerSession))
	}
	r.relayAnswer(ctx, resp, env)
}

// failDo tells the client why a request did not reach the edge: a
// refused credential with the edge's code, anything else as a failure
// of the bridge.
func (r *relay) failDo(env *envelope, err error) {
	if code, msg, ok := Refusal(err); ok {
		if !env.isRequest() {
			r.logger.Warn("the edge refused a message", logkey.MCPMethod, env.Method,
				logkey.Error, msg)
			return
		}
		r.writeError(env.ID, code, "airlock bridge: "+msg)
		return
	}
	r.fail(env, fmt.Sprintf("cannot reach the edge at %s: %v", r.b.Endpoint, err))
}

// newSession starts using the session an initialize answer named, and
// ends the one it replaces, if any.
func (r *relay) newSession(ctx context.Context, session string) {
	r.mu.Lock()
	old := r.session
	r.session = session
	r.mu.Unlock()
	if old != "" && old != session {
		r.ending.Add(1)
		go func() {
			defer r.ending.Done()
			r.deleteSession(context.WithoutCancel(ctx), old)
		}()
	}
}

// setHeaders adds the session, the protocol version and, from MCP
// 2026-07-28 on, the routing headers that must match the body.
func (r *relay) setHeaders(h http.Header, env *envelope) {
	r.mu.Lock()
	session, version := r.session, r.version
	r.mu.Unlock()
	if v := metaVersion(env.Params); v != "" {
		version = v
	}
	if env.Method == "initialize" {
		// A new session starts without the old one's id or version.
		return
	}
	if session != "" {
		h.Set(headerSession, session)
	}
	if version != "" {
		h.Set(headerVersion, version)
	}
	if version < versionHeaders || env.Method == "" {
		return
	}
	h.Set(mcp.HeaderMethod, env.Method)
	switch env.Method {
	case "tools/call", "prompts/get", "resources/read":
		var p struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		}
		json.Unmarshal(env.Params, &p)
		name := p.Name
		if env.Method == "resources/read" {
			name = p.URI
		}
		h.Set(mcp.HeaderName, name)
	}
	if env.Method == "tools/call" {
		for k, v := range r.params.headers(env.Params) {
			h.Set(k, v)
		}
	}
}

// metaVersion reads the protocol version that MCP 2026-07-28 requests
// carry in params._meta instead of a session.
func metaVersion(params json.RawMessage) string {
	var p struct {
		Meta struct {
			Version string `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
	}
	json.Unmarshal(params, &p)
	return p.Meta.Version
}

// relayAnswer passes the answer to one POST back to the client.
func (r *relay) relayAnswer(ctx context.Context, resp *http.Response, env *envelope) {
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mediaType == "text/event-stream" && resp.StatusCode == http.StatusOK:
		answered, lastID, err := r.relayEvents(resp.Body, env)
		if answered || !env.isRequest() || ctx.Err() != nil {
			return
		}
		// The stream broke before the answer: pick it up where it ended,
		// as Streamable HTTP allows (a failover to another edge, a
		// connector restart).
		if lastID != "" && r.resume(ctx, env, lastID) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		why := "the edge ended the answer's event stream before the answer"
		if err != nil {
			why += fmt.Sprintf(" (%v)", err)
		}
		r.fail(env, why)
	case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent:
		if env.isRequest() {
			r.fail(env, fmt.Sprintf("the edge accepted the request with %d but sent no answer",
				resp.StatusCode))
		}
	default:
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(r.max)+1))
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			r.fail(env, fmt.Sprintf("reading the edge's answer (%d): %v", resp.StatusCode, err))
		case len(body) > r.max:
			r.fail(env, fmt.Sprintf("the edge's answer is over %d bytes", r.max))
		default:
			r.relayBody(resp.StatusCode, body, env)
		}
	}
}

// relayBody passes a JSON answer, or an error body, back to the client.
// An error the edge sent as a JSON-RPC message goes through as it is
// (with the request's id if it had none); any other error becomes one.
func (r *relay) relayBody(status int, body []byte, env *envelope) {
	var answer struct {
		ID    json.RawMessage `json:"id"`
		Error json.RawMessage `json:"error"`
	}
	isMessage := json.Valid(body) && json.Unmarshal(body, &answer) == nil
	switch {
	case status/100 == 2 && isMessage:
		r.deliver(body, env)
	case isMessage && answer.Error != nil && env.isRequest():
		if len(answer.ID) == 0 || isNull(answer.ID) {
			body = withID(body, env.ID)
		}
		r.deliver(body, env)
	case isMessage && answer.Error != nil:
		r.logger.Warn("the edge refused a message", logkey.MCPMethod, env.Method,
			logkey.Status, status, logkey.Error, string(answer.Error))
	case len(bytes.TrimSpace(body)) == 0 && status/100 == 2:
		if env.isRequest() {
			r.fail(env, fmt.Sprintf("the edge answered %d with an empty body", status))
		}
	default:
		text := strings.TrimSpace(string(body))
		if len(text) > 300 {
			text = text[:300] + "..."
		}
		r.fail(env, fmt.Sprintf("the edge answered %d %s: %s",
			status, http.StatusText(status), text))
	}
}

// relayEvents passes every event of a stream to the client. It reports
// whether the answer to env came, and the last event id.
func (r *relay) relayEvents(body io.Reader, env *envelope) (bool, string, error) {
	events := newEventReader(body, r.max)
	lastID := ""
	for {
		ev, err := events.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return false, lastID, err
		}
		if ev.hasID {
			lastID = ev.id
		}
		if len(bytes.TrimSpace(ev.data)) == 0 {
			continue // an event that only sets the id
		}
		if !json.Valid(ev.data) {
			r.logger.Warn("an event that is not JSON, dropped", logkey.MCPMethod, env.Method)
			continue
		}
		answered := env.isRequest() && answers(ev.data, env.ID)
		r.deliver(ev.data, env)
		if answered {
			return true, lastID, nil
		}
	}
}

// answers reports whether msg is the response to the request with id.
func answers(msg []byte, id json.RawMessage) bool {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Method != "" {
		return false
	}
	return bytes.Equal(compact(m.ID), compact(id))
}

// resume reopens a broken answer stream with Last-Event-ID, a few times.
func (r *relay) resume(ctx context.Context, env *envelope, lastID string) bool {
	delay := r.retryDelay()
	for range 3 {
		if !sleep(ctx, delay) {
			return false
		}
		delay *= 2
		resp, err := r.get(ctx, lastID)
		if err != nil {
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		answered, id, _ := r.relayEvents(resp.Body, env)
		resp.Body.Close()
		if answered {
			return true
		}
		if id != "" {
			lastID = id
		}
	}
	return false
}

// get opens a GET event stream of the session.
func (r *relay) get(ctx context.Context, lastID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.b.Endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	r.setHeaders(req.Header, &envelope{})
	if lastID != "" {
		req.Header.Set(headerLastID, lastID)
	}
	return r.b.Client.Do(req)
}

// startListening opens the standing GET stream, over which the server
// sends requests and notifications outside any request, once a session
// on a protocol that has one is initialized.
func (r *relay) startListening(ctx context.Context, wg *sync.WaitGroup) {
	r.mu.Lock()
	start := !r.listening && r.session != "" && r.version != "" && r.version < versionHeaders
	r.listening = r.listening || start
	r.mu.Unlock()
	if !start {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.listen(ctx)
		r.mu.Lock()
		r.listening = false
		r.mu.Unlock()
	}()
}

// listen keeps the standing stream open until ctx is done, the server
// says it has none (405) or the session is gone (404), or the edge
// refuses it.
func (r *relay) listen(ctx context.Context) {
	delay := r.retryDelay()
	lastID := ""
	for ctx.Err() == nil {
		resp, err := r.get(ctx, lastID)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				r.logger.Warn("the server's event stream failed", logkey.Error, err)
			}
		case resp.StatusCode == http.StatusOK:
			before := lastID
			_, id, _ := r.relayEvents(resp.Body, &envelope{})
			resp.Body.Close()
			if id != "" {
				lastID = id
			}
			if lastID != before {
				delay = r.retryDelay() // events came: the stream worked
			}
		case resp.StatusCode == http.StatusMethodNotAllowed:
			resp.Body.Close()
			return
		default:
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				r.logger.Warn("the session ended on the server; " +
					"the MCP client must initialize again")
			} else {
				r.logger.Warn("the edge refused the server's event stream",
					logkey.Status, resp.StatusCode)
			}
			if resp.StatusCode/100 == 4 {
				return
			}
		}
		if !sleep(ctx, delay) {
			return
		}
		delay = min(delay*2, 30*r.retryDelay())
	}
}

func (r *relay) retryDelay() time.Duration {
	if r.b.RetryDelay > 0 {
		return r.b.RetryDelay
	}
	return 500 * time.Millisecond
}

// endSession ends the session on the server, if there is one.
func (r *relay) endSession(ctx context.Context) {
	r.mu.Lock()
	session := r.session
	r.mu.Unlock()
	if session != "" {
		r.deleteSession(ctx, session)
	}
}

func (r *relay) deleteSession(ctx context.Context, session string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.b.Endpoint, nil)
	if err != nil {
		return
	}
	r.setHeaders(req.Header, &envelope{})
	req.Header.Set(headerSession, session)
	resp, err := r.b.Client.Do(req)
	if err != nil {
		r.logger.Warn("ending the session failed", logkey.Error, err)
		return
	}
	resp.Body.Close()
}

// deliver writes one message to the client as one line. From the answer
// to initialize it learns the protocol version, from answers to
// tools/list the tools' header bindings. A failed write ends Run.
func (r *relay) deliver(msg []byte, env *envelope) {
	msg = compact(msg)
	if env != nil && env.isRequest() && (env.Method == "initialize" || env.Method == "tools/list") {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(msg, &m) == nil && m.Result != nil &&
			bytes.Equal(compact(m.ID), compact(env.ID)) {
			r.learn(env.Method, m.Result)
		}
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if _, err := r.out.Write(append(msg, '\n')); err != nil {
		r.abort(fmt.Errorf("writing to the MCP client: %w", err))
	}
}

func (r *relay) learn(method string, result json.RawMessage) {
	if method == "tools/list" {
		r.params.learn(result)
		return
	}
	var init struct {
		Version string `json:"protocolVersion"`
	}
	json.Unmarshal(result, &init)
	r.mu.Lock()
	r.version = init.Version
	r.mu.Unlock()
}

// fail tells the client that its request could not be delivered; for a
// notification or a response, which nobody waits for, it logs.
func (r *relay) fail(env *envelope, why string) {
	if !env.isRequest() {
		r.logger.Warn("a message could not be delivered", logkey.MCPMethod, env.Method,
			logkey.Error, why)
		return
	}
	r.writeError(env.ID, mcp.CodeBridgeFailed, "airlock bridge: "+why)
}

func (r *relay) writeError(id json.RawMessage, code int, message string) {
	r.deliver(mcp.ErrorBody(id, code, message, nil), nil)
}

// withID sets the id of a JSON-RPC message.
func withID(msg []byte, id json.RawMessage) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return msg
	}
	m["id"] = id
	out, err := json.Marshal(m)
	if err != nil {
		return msg
	}
	return out
}

// compact removes insignificant whitespace (newlines included, which the
// stdio transport cannot carry inside a message).
func compact(msg []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, msg) != nil {
		return msg
	}
	return b.Bytes()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
