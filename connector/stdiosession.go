package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// Codes that MCP 2026-07-28 answers with HTTP 404 or 400 rather than in
// a stream (SEP-2575): method not found, invalid params, unsupported
// protocol version, missing client capabilities.
var errorStatus = map[int]int{
	mcp.CodeMethodNotFound:            http.StatusNotFound,
	mcp.CodeInvalidParams:             http.StatusBadRequest,
	mcp.CodeUnsupportedVersion:        http.StatusBadRequest,
	mcp.CodeMissingClientCapabilities: http.StatusBadRequest,
}

// protocolStateless is the first MCP revision whose requests need no
// session (SEP-2575).
const protocolStateless = "2026-07-28"

// protocolInitialize is the revision the bridge initializes a process
// with when it does so on a client's behalf.
const protocolInitialize = "2025-11-25"

// answerGrace bounds how long a closing session waits for the error
// answers of its requests in flight to go out.
const answerGrace = time.Second

// answerSettle is how long the GET stream of a closing session outlives
// the error answers of its requests, so that they reach the client
// first.
const answerSettle = 200 * time.Millisecond

// maxQueued bounds the messages waiting for a slow client on one stream;
// beyond it, notifications for that stream are dropped.
const maxQueued = 4096

// maxReplies bounds the bridge's own answers waiting to be written to a
// process (refused server-to-client requests); beyond it they are
// dropped, since the process is not reading its stdin anyway.
const maxReplies = 64

// closeKind says why a session ended.
type closeKind int

const (
	closeDeleted closeKind = iota
	closeIdle
	closeShutdown
	closeDone
	closeFailedInit
	closeCrashed
	closeBroken
	closeStuck
)

// stdioSession is one process and the MCP session (or the single
// request) it serves. It routes what the process writes: a response to
// the stream of its request, a progress notification to the stream of
// the request that asked for progress, a server-to-client request to the
// newest request's stream (stdio cannot say which request it belongs
// to), other notifications to the standalone GET stream.
type stdioSession struct {
	srv    *stdioServer
	id     string // "" for a single request
	proc   *process
	logger *slog.Logger
	// done is closed when the session has ended and its process is gone.
	done chan struct{}
	// replies holds the bridge's own answers to the process, which
	// writeReplies writes, so that reading stdout never waits on stdin.
	replies chan []byte

	// mu guards the fields below.
	mu        sync.Mutex
	calls     map[string]*call // by idKey of the request
	progress  map[string]*call // by idKey of the progress token
	seq       uint64
	get       *sseStream
	active    int
	used      bool      // a request other than initialize came
	idleSince time.Time // when active last fell to 0
	closing   bool
	idle      *time.Timer
}

// call is a request from the client waiting for the process's answer.
type call struct {
	id    json.RawMessage
	seq   uint64
	token string
	st    *sseStream
}

func newStdioSession(
	s *stdioServer,
	id string,
	p *process,
	logger *slog.Logger,
) *stdioSession {
	ss := &stdioSession{
		srv:       s,
		id:        id,
		proc:      p,
		logger:    logger,
		done:      make(chan struct{}),
		replies:   make(chan []byte, maxReplies),
		calls:     map[string]*call{},
		progress:  map[string]*call{},
		idleSince: time.Now(),
	}
	if id != "" {
		ss.idle = time.AfterFunc(ss.idleTimeoutLocked(), ss.idleExpired)
	}
	return ss
}

// idleTimeoutLocked is how long the session may idle: the resource's
// idle_timeout, but at most firstRequestTimeout until a request other
// than initialize came, so that sessions opened and left never to be
// used give their process slot back soon.
func (ss *stdioSession) idleTimeoutLocked() time.Duration {
	if ss.used {
		return ss.srv.res.IdleTimeout
	}
	return min(ss.srv.res.IdleTimeout, ss.srv.firstRequestTimeout)
}

// enter marks a POST of msg in flight, which keeps the session from
// idling; it returns false if the session is ending.
func (ss *stdioSession) enter(msg *message) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing {
		return false
	}
	ss.active++
	if msg.isRequest() && msg.method != "initialize" {
		ss.used = true
	}
	if ss.idle != nil {
		ss.idle.Stop()
	}
	return true
}

func (ss *stdioSession) leave() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.active--
	if ss.active == 0 && !ss.closing && ss.idle != nil {
		ss.idleSince = time.Now()
		ss.idle.Reset(ss.idleTimeoutLocked())
	}
}

// idleExpired closes an idle session. It decides and marks the session
// closing at once, so that a POST cannot slip in between.
func (ss *stdioSession) idleExpired() {
	ss.mu.Lock()
	if ss.active > 0 || ss.closing {
		ss.mu.Unlock()
		return
	}
	// A timer that fired just before a POST came and went is stale.
	timeout := ss.idleTimeoutLocked()
	if left := timeout - time.Since(ss.idleSince); left > 0 {
		ss.idle.Reset(left)
		ss.mu.Unlock()
		return
	}
	calls, get := ss.markClosingLocked()
	ss.mu.Unlock()
	ss.finish(closeIdle, timeout.String(), calls, get)
}

// post hands a client's message to the process. A request's answer and
// the messages that belong to it stream back as SSE events; post returns
// that answer, or nil if the client left or the session ended first.
func (ss *stdioSession) post(w http.ResponseWriter, r *http.Request, msg *message) *message {
	if !ss.enter(msg) {
		writeSessionGone(w, r, msg.id)
		return nil
	}
	defer ss.leave()
	if !msg.isRequest() {
		ss.postNotification(w, r, msg)
		return nil
	}
	c, err := ss.begin(msg)
	if err != nil {
		writeRPCError(w, r, http.StatusBadRequest, msg.id, mcp.CodeInvalidRequest, err.Error())
		return nil
	}
	switch err := ss.send(r.Context(), msg.raw); {
	case err == nil:
	case errors.Is(err, errStdinBroken):
		// The session's end answers the call.
	case r.Context().Err() != nil:
		ss.end(c)
		return nil
	default:
		// The process is gone; its exit ends the call with an error,
		// which the stream below delivers.
		ss.logger.Debug("stdio request not delivered", logkey.Error, err)
	}
	if msg.method == "initialize" && ss.id != "" {
		w.Header().Set(headerSession, ss.id)
	}
	newProtocol := r.Header.Get(headerVersion) >= protocolStateless
	return c.st.serve(w, r, false, newProtocol)
}

// postNotification hands a notification or a response to the process.
func (ss *stdioSession) postNotification(w http.ResponseWriter, r *http.Request, msg *message) {
	err := ss.send(r.Context(), msg.raw)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, errStdinBroken):
		writeRPCError(w, r, http.StatusBadGateway, nil, mcp.CodeUpstreamFailed,
			ss.reason(closeStuck, err.Error()))
	case r.Context().Err() != nil:
	default:
		writeSessionGone(w, r, nil)
	}
}

// send writes msg to the process. A write that leaves stdin unusable
// ends the session.
func (ss *stdioSession) send(ctx context.Context, msg []byte) error {
	err := ss.proc.write(ctx, msg, ss.srv.writeTimeout)
	if errors.Is(err, errStdinBroken) {
		go ss.close(closeStuck, err.Error())
	}
	return err
}

// reply queues an answer of the bridge's own to the process; it never
// waits.
func (ss *stdioSession) reply(msg []byte) {
	select {
	case ss.replies <- msg:
	default:
		// Debug: a process that floods would flood the log too; one that
		// stays stuck ends its session soon, which is logged.
		ss.logger.Debug("stdio answer dropped: the process does not read its stdin")
	}
}

// writeReplies writes the queued answers until the session has ended.
func (ss *stdioSession) writeReplies() {
	for {
		select {
		case msg := <-ss.replies:
			if err := ss.send(context.Background(), msg); err != nil {
				ss.logger.Debug("stdio answer not delivered", logkey.Error, err)
			}
		case <-ss.done:
			return
		}
	}
}

// begin registers a request, so that its answer finds its stream.
func (ss *stdioSession) begin(msg *message) (*call, error) {
	key := idKey(msg.id)
	if key == "" {
		return nil, fmt.Errorf("request id %s is neither a string nor a number", msg.id)
	}
	token := msg.progressToken()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing {
		return nil, errors.New("the session is ending")
	}
	if ss.calls[key] != nil {
		return nil, fmt.Errorf("request id %s is already in flight in this session", msg.id)
	}
	// Progress notifications name only their token: two requests with
	// one token could not tell theirs apart.
	if token != "" && ss.progress[token] != nil {
		return nil, errors.New("the progress token of this request is already in use by another request in flight in this session")
	}
	ss.seq++
	c := &call{id: msg.id, seq: ss.seq, token: token, st: newSSEStream()}
	ss.calls[key] = c
	if c.token != "" {
		ss.progress[c.token] = c
	}
	return c, nil
}

// end forgets a call that will get no answer.
func (ss *stdioSession) end(c *call) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.forgetLocked(idKey(c.id), c)
}

// forgetLocked removes call c, known by key, if it is still registered.
func (ss *stdioSession) forgetLocked(key string, c *call) {
	if ss.calls[key] == c {
		delete(ss.calls, key)
	}
	if c.token != "" && ss.progress[c.token] == c {
		delete(ss.progress, c.token)
	}
}

// handshake initializes the process on behalf of a client that sent a
// request without a session (MCP 2026-07-28): initialize with
// protocolInitialize and the client's capabilities and info from the
// request's _meta, then notifications/initialized (MCP 2025-11-25,
// lifecycle).
func (ss *stdioSession) handshake(ctx context.Context, req *message) error {
	clientInfo := req.meta(metaClientInfo)
	if clientInfo == nil {
		clientInfo, _ = json.Marshal(map[string]string{
			"name":    "airlock-connector",
			"version": Software,
		})
	}
	caps := req.meta(metaClientCapabilities)
	if len(caps) == 0 || caps[0] != '{' {
		caps = json.RawMessage(`{}`)
	}
	params, _ := json.Marshal(map[string]any{
		"protocolVersion": protocolInitialize,
		"capabilities":    caps,
		"clientInfo":      clientInfo,
	})
	init := &message{
		raw: fmt.Appendf(nil,
			`{"jsonrpc":"2.0","id":"airlock-initialize","method":"initialize","params":%s}`, params),
		id:     json.RawMessage(`"airlock-initialize"`),
		method: "initialize",
	}
	c, err := ss.begin(init)
	if err != nil {
		return err
	}
	defer ss.end(c)
	if err := ss.send(ctx, init.raw); err != nil {
		return err
	}
	answer, err := c.st.await(ctx)
	if err != nil {
		return err
	}
	if answer.isError() {
		return fmt.Errorf("initialize failed: %s", answer.errorMessage())
	}
	return ss.send(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
}

// serveGET streams the messages that belong to no request.
func (ss *stdioSession) serveGET(w http.ResponseWriter, r *http.Request) {
	st := newSSEStream()
	ss.mu.Lock()
	switch {
	case ss.closing:
		ss.mu.Unlock()
		writeSessionGone(w, r, nil)
		return
	case ss.get != nil:
		ss.mu.Unlock()
		writeRPCError(w, r, http.StatusConflict, nil, mcp.CodeInvalidRequest,
			"this session already has a GET stream open")
		return
	}
	ss.get = st
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		if ss.get == st {
			ss.get = nil
		}
		ss.mu.Unlock()
	}()
	st.serve(w, r, true, false)
}

// pump routes what the process writes until it exits, then ends the
// session if nobody asked for that.
func (ss *stdioSession) pump() {
	err := ss.proc.readMessages(ss.route)
	if err != nil {
		ss.logger.Warn("stdio server broke the protocol, stopping it", logkey.Error, err)
		// Unread output would hold up the process's reaping.
		ss.proc.stdout.Close()
		ss.close(closeBroken, err.Error())
		return
	}
	<-ss.proc.exited
	ss.close(closeCrashed, ss.proc.status)
}

// route delivers one message of the process. It never waits for the
// process's stdin, which the process may not be reading while it waits
// to write more on stdout.
func (ss *stdioSession) route(line []byte) {
	msg, err := parseMessage(line)
	if err != nil {
		ss.logger.Warn("stdio server wrote a line that is not a JSON-RPC message, skipped",
			logkey.Error, err)
		return
	}
	ss.mu.Lock()
	target, final := ss.targetLocked(msg)
	ss.mu.Unlock()

	delivered := target != nil && target.push(msg.raw, final)
	switch {
	case delivered:
	case msg.isRequest():
		// Nobody will answer; say so at once rather than let the
		// process wait.
		reason := "no client stream is open to carry this request"
		if ss.id == "" {
			reason = "the client sent a request without a session, so it cannot answer requests"
		}
		ss.reply(mcp.ErrorBody(msg.id, mcp.CodeInternalError, reason, nil))
	case target != nil:
		ss.logger.Debug("stdio message dropped: its stream is gone")
	default:
		ss.logger.Debug("stdio message dropped: no stream to carry it",
			logkey.MCPMethod, msg.method)
	}
}

// targetLocked picks the stream for a message of the process, and says
// whether it is that stream's last.
func (ss *stdioSession) targetLocked(msg *message) (*sseStream, bool) {
	if msg.isResponse() {
		key := idKey(msg.id)
		c := ss.calls[key]
		if c == nil {
			return nil, false
		}
		ss.forgetLocked(key, c)
		return c.st, true
	}
	if msg.method == "notifications/progress" {
		if c := ss.progress[msg.progressToken()]; c != nil {
			return c.st, false
		}
	}
	if msg.isRequest() {
		if ss.id == "" {
			return nil, false
		}
		if c := ss.newestLocked(); c != nil {
			return c.st, false
		}
		return ss.get, false
	}
	if ss.get != nil {
		return ss.get, false
	}
	// Without a GET stream a notification is most likely about the
	// request in flight; a request without a session has nothing else.
	if c := ss.newestLocked(); c != nil {
		return c.st, false
	}
	return nil, false
}

// newestLocked returns the newest request whose client still listens.
func (ss *stdioSession) newestLocked() *call {
	var newest *call
	for _, c := range ss.calls {
		if (newest == nil || c.seq > newest.seq) && !c.st.isGone() {
			newest = c
		}
	}
	return newest
}

// close ends the session: its ID is unknown from now on, requests in
// flight get a JSON-RPC error, the GET stream ends, and the process is
// stopped and reaped. detail is the exit status of a crashed process,
// what a broken or stuck one did, or how long an idle session idled.
// Later calls wait for the first to finish.
func (ss *stdioSession) close(kind closeKind, detail string) {
	ss.mu.Lock()
	if ss.closing {
		ss.mu.Unlock()
		<-ss.done
		return
	}
	calls, get := ss.markClosingLocked()
	ss.mu.Unlock()
	ss.finish(kind, detail, calls, get)
}

// markClosingLocked marks the session closing and takes its calls and
// its GET stream, which finish then ends.
func (ss *stdioSession) markClosingLocked() (map[string]*call, *sseStream) {
	ss.closing = true
	calls, get := ss.calls, ss.get
	ss.calls, ss.progress, ss.get = map[string]*call{}, map[string]*call{}, nil
	if ss.idle != nil {
		ss.idle.Stop()
	}
	return calls, get
}

// finish does the work of close for the caller that marked the session
// closing.
func (ss *stdioSession) finish(
	kind closeKind,
	detail string,
	calls map[string]*call,
	get *sseStream,
) {
	ss.srv.forget(ss)
	why := ss.reason(kind, detail)
	if kind == closeCrashed || kind == closeBroken || kind == closeStuck {
		ss.logger.Warn("stdio process ended the session",
			logkey.ExitStatus, detail, logkey.Reason, why)
	}
	for _, c := range calls {
		c.st.push(mcp.ErrorBody(c.id, mcp.CodeUpstreamFailed, why, nil), true)
	}
	if get != nil {
		// Clients take the end of the GET stream for the end of the
		// session and fail what is pending; let the answers above get
		// ahead of it, they travel the tunnel on streams of their own.
		ss.awaitAnswers(calls)
		get.push(nil, true)
	}
	ss.proc.stop()
	close(ss.done)

	switch kind {
	case closeCrashed, closeBroken, closeStuck:
	case closeDone:
		ss.logger.Debug("stdio process stopped", logkey.ExitStatus, ss.proc.status)
	default:
		ss.logger.Info("stdio session closed",
			logkey.ExitStatus, ss.proc.status, logkey.Reason, why)
	}
}

// awaitAnswers waits until the answers of calls have been written and a
// little more, at most answerGrace in all.
func (ss *stdioSession) awaitAnswers(calls map[string]*call) {
	if len(calls) == 0 {
		return
	}
	deadline := time.NewTimer(answerGrace)
	defer deadline.Stop()
	for _, c := range calls {
		select {
		case <-c.st.finished:
		case <-deadline.C:
			return
		}
	}
	settle := time.NewTimer(answerSettle)
	defer settle.Stop()
	select {
	case <-settle.C:
	case <-deadline.C:
	}
}

func (ss *stdioSession) reason(kind closeKind, detail string) string {
	name := ss.srv.res.Name
	switch kind {
	case closeCrashed:
		return fmt.Sprintf(
			"the process of resource %s exited (%s); the session is gone, start a new one",
			name, detail)
	case closeBroken:
		return fmt.Sprintf(
			"the process of resource %s broke the MCP stdio protocol (%s) and was stopped",
			name, detail)
	case closeStuck:
		return fmt.Sprintf(
			"the process of resource %s stopped taking messages on stdin (%s) and was stopped",
			name, detail)
	case closeIdle:
		return fmt.Sprintf("the session of resource %s was idle for %s and was closed",
			name, detail)
	case closeShutdown:
		return fmt.Sprintf("connector %s is stopping, so the process of resource %s was stopped",
			ss.srv.connector, name)
	case closeDeleted:
		return fmt.Sprintf("the session of resource %s was closed by the client", name)
	}
	return fmt.Sprintf("the process of resource %s was stopped", name)
}

// sseStream carries messages of the process to one HTTP response: the
// answer to a POST, or the GET stream. The routing side pushes; the
// request's handler writes.
type sseStream struct {
	wake chan struct{}
	// finished is closed when the stream's response has ended.
	finished chan struct{}
	once     sync.Once
	// mu guards the fields below.
	mu    sync.Mutex
	queue [][]byte
	final bool // no more messages come after the queued ones
	gone  bool // the HTTP response has ended
}

func newSSEStream() *sseStream {
	return &sseStream{wake: make(chan struct{}, 1), finished: make(chan struct{})}
}

// push queues msg (if not nil); final ends the stream after it. It
// returns false if the stream takes no more messages.
func (st *sseStream) push(msg []byte, final bool) bool {
	st.mu.Lock()
	if st.gone || st.final || (len(st.queue) >= maxQueued && !final) {
		st.mu.Unlock()
		return false
	}
	if msg != nil {
		st.queue = append(st.queue, msg)
	}
	st.final = final
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return true
}

func (st *sseStream) take() ([][]byte, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queue
	st.queue = nil
	return q, st.final
}

func (st *sseStream) leave() {
	st.mu.Lock()
	st.gone = true
	st.queue = nil
	st.mu.Unlock()
	st.once.Do(func() { close(st.finished) })
}

func (st *sseStream) isGone() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.gone
}

// await returns the stream's final message without sending it anywhere:
// the bridge's own requests use it.
func (st *sseStream) await(ctx context.Context) (*message, error) {
	defer st.leave()
	var last []byte
	for {
		msgs, final := st.take()
		if len(msgs) > 0 {
			last = msgs[len(msgs)-1]
		}
		if final {
			return parseMessage(last)
		}
		select {
		case <-st.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// serve writes the stream as SSE events until its final message or until
// the client leaves, and returns the final message (nil if there was
// none). The head waits for the first message, as the go-sdk's server
// does, so that on MCP 2026-07-28 (newProtocol) an answer that is only
// an error such as method-not-found goes out as plain JSON with its HTTP
// status (SEP-2575). A GET stream (standalone) starts at once.
func (st *sseStream) serve(
	w http.ResponseWriter,
	r *http.Request,
	standalone, newProtocol bool,
) *message {
	defer st.leave()
	rc := http.NewResponseController(w)
	started := false
	if standalone {
		writeSSEHead(w)
		fmt.Fprint(w, ": stream open\n\n")
		rc.Flush()
		started = true
	}
	for {
		msgs, final := st.take()
		var last *message
		if final && len(msgs) > 0 {
			last, _ = parseMessage(msgs[len(msgs)-1])
		}
		var status int
		if final && len(msgs) == 1 && newProtocol && last != nil {
			status = errorStatus[last.errorCode()]
		}
		if !started && status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(msgs[0])
			return last
		}
		if !started && (len(msgs) > 0 || final) {
			writeSSEHead(w)
			started = true
		}
		for _, m := range msgs {
			if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", m); err != nil {
				return nil
			}
		}
		if started {
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
		if final {
			return last
		}
		select {
		case <-st.wake:
		case <-r.Context().Done():
			return nil
		}
	}
}

func writeSSEHead(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	w.WriteHeader(http.StatusOK)
}
