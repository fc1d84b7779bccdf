package connector

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

// Headers of MCP's Streamable HTTP transport (MCP 2025-11-25).
const (
	headerSession     = "Mcp-Session-Id"
	headerVersion     = "Mcp-Protocol-Version"
	headerLastEventID = "Last-Event-Id"
	// headerRequestID is the edge's ID of the request.
	headerRequestID = "Airlock-Request-Id"
)

var (
	errAtCapacity = errors.New("process cap reached")
	errStopping   = errors.New("connector stopping")
)

const (
	// stdinTimeout bounds one write to a process's stdin; a process that
	// takes nothing for this long is stopped.
	stdinTimeout = 10 * time.Second
	// initTimeout bounds the initialize the bridge sends on behalf of a
	// request without a session.
	initTimeout = 10 * time.Second
	// firstRequestTimeout is the idle timeout of a session until its
	// first request after initialize, if idle_timeout is longer.
	firstRequestTimeout = time.Minute
	// retryAfter is the Retry-After of a request refused over the
	// process cap, in seconds.
	retryAfter = "5"
)

// stdioServer bridges one command resource to Streamable HTTP. Every MCP
// session gets a process of its own, started on initialize; a request
// without a session (stateless MCP 2026-07-28 traffic) gets a process
// for just that request. Messages pass between the HTTP side and the
// process byte for byte (only whitespace between JSON tokens is dropped,
// since stdio frames messages by lines).
//
// It serves HTTP on a [pipeListener]: the connector's relay reaches it
// through an ordinary http.Client, and no port is opened.
type stdioServer struct {
	res       Resource
	connector string
	logger    *slog.Logger
	listener  *pipeListener
	srv       *http.Server
	served    chan struct{}

	// writeTimeout, initTimeout and firstRequestTimeout are stdinTimeout,
	// initTimeout and firstRequestTimeout; tests shorten them.
	writeTimeout        time.Duration
	initTimeout         time.Duration
	firstRequestTimeout time.Duration

	// running counts processes that have not been reaped yet.
	running sync.WaitGroup

	// mu guards sessions, byID, procs, byAgent, started and closed.
	mu       sync.Mutex
	sessions map[*stdioSession]struct{}
	byID     map[string]*stdioSession
	procs    int
	byAgent  map[string]int // processes per agent
	started  bool
	closed   bool
}

func newStdioServer(res Resource, connector string, logger *slog.Logger) *stdioServer {
	s := &stdioServer{
		res:       res,
		connector: connector,
		logger:    logger.With(logkey.Resource, res.Name),
		listener:  newPipeListener(),
		served:    make(chan struct{}),
		sessions:  map[*stdioSession]struct{}{},
		byID:      map[string]*stdioSession{},
		byAgent:   map[string]int{},

		writeTimeout:        stdinTimeout,
		initTimeout:         initTimeout,
		firstRequestTimeout: firstRequestTimeout,
	}
	s.srv = &http.Server{
		Handler:  s,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	return s
}

// start serves HTTP until close.
func (s *stdioServer) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	go func() {
		defer close(s.served)
		s.srv.Serve(s.listener)
	}()
}

// close stops every process of the resource, waits until all are
// reaped, and stops serving. Requests in flight get a JSON-RPC error.
func (s *stdioServer) close() {
	s.mu.Lock()
	s.closed = true
	started := s.started
	all := make([]*stdioSession, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Go(func() { ss.close(closeShutdown, "") })
	}
	wg.Wait()
	s.running.Wait()
	s.srv.Close()
	s.listener.Close()
	if started {
		<-s.served
	}
}

func (s *stdioServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		s.servePOST(w, r)
	case http.MethodGet:
		s.serveGET(w, r)
	case http.MethodDelete:
		s.serveDELETE(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeRPCError(w, r, http.StatusMethodNotAllowed, nil, mcp.CodeInvalidRequest,
			"MCP's Streamable HTTP transport uses GET, POST and DELETE only")
	}
}

func (s *stdioServer) servePOST(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeRPCError(w, r, http.StatusUnsupportedMediaType, nil, mcp.CodeInvalidRequest,
			"a POST must carry one JSON-RPC message as application/json")
		return
	}
	if !accepts(r, "application/json") || !accepts(r, "text/event-stream") {
		writeRPCError(w, r, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"Accept must list both application/json and text/event-stream")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeRPCError(w, r, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"reading the request body: "+err.Error())
		return
	}
	msg, err := parseMessage(body)
	if err != nil {
		code := mcp.CodeInvalidRequest
		if errors.Is(err, errNotJSON) {
			code = mcp.CodeParseError
		}
		writeRPCError(w, r, http.StatusBadRequest, nil, code, err.Error())
		return
	}

	if sid := r.Header.Get(headerSession); sid != "" {
		ss := s.lookup(sid)
		if ss == nil {
			writeSessionGone(w, r, msg.id)
			return
		}
		ss.post(w, r, msg)
		return
	}
	switch {
	case msg.isRequest() && msg.method == "initialize":
		s.serveInitialize(w, r, msg)
	case msg.isRequest():
		if s.checkStateless(w, r, msg) {
			s.serveOnce(w, r, msg)
		}
	default:
		// Without a session there is no process the message is for.
		w.WriteHeader(http.StatusAccepted)
	}
}

// serveInitialize starts a session and its process, and hands the
// initialize to it.
func (s *stdioServer) serveInitialize(w http.ResponseWriter, r *http.Request, msg *message) {
	ss, ok := s.open(w, r, msg, rand.Text())
	if !ok {
		return
	}
	answer := ss.post(w, r, msg)
	// A session whose initialize failed is of no use (nor is one whose
	// client left before it learned the session ID).
	if answer == nil || answer.isError() {
		ss.close(closeFailedInit, "")
	}
}

// serveOnce answers a request without a session: it starts a process,
// initializes it on the client's behalf, relays the request and stops
// the process (MCP 2026-07-28, stateless requests).
func (s *stdioServer) serveOnce(w http.ResponseWriter, r *http.Request, msg *message) {
	ss, ok := s.open(w, r, msg, "")
	if !ok {
		return
	}
	defer ss.close(closeDone, "")
	ctx, cancel := context.WithTimeoutCause(r.Context(), s.initTimeout,
		fmt.Errorf("the process did not answer initialize within %s", s.initTimeout))
	defer cancel()
	if err := ss.handshake(ctx, msg); err != nil {
		if cause := context.Cause(ctx); cause != nil && r.Context().Err() == nil {
			err = cause
		}
		ss.logger.Warn("stdio server initialization failed", logkey.Error, err)
		writeRPCError(w, r, http.StatusBadGateway, msg.id, mcp.CodeUpstreamFailed,
			fmt.Sprintf("connector %s could not initialize the process of resource %s: %v",
				s.connector, s.res.Name, err))
		return
	}
	ss.post(w, r, msg)
}

// checkStateless reports whether a request without a session may have
// a process of its own: only on MCP 2026-07-28 and later, named by the
// Mcp-Protocol-Version header or the request's
// params._meta["io.modelcontextprotocol/protocolVersion"] (SEP-2575).
// Earlier revisions need a session; when it returns false it has
// answered the request.
func (s *stdioServer) checkStateless(w http.ResponseWriter, r *http.Request, msg *message) bool {
	header, meta := r.Header.Get(headerVersion), msg.protocolVersion()
	version := cmp.Or(header, meta)
	switch {
	case header != "" && meta != "" && header != meta:
		writeRPCError(w, r, http.StatusBadRequest, msg.id, mcp.CodeHeaderMismatch,
			fmt.Sprintf("the Mcp-Protocol-Version header %q and params._meta[%q] %q disagree",
				header, metaProtocolVersion, meta))
		return false
	case version != "" && !slices.Contains(knownRevisions, version):
		writeRPCError(w, r, http.StatusBadRequest, msg.id, mcp.CodeUnsupportedVersion,
			fmt.Sprintf("protocol version %q is not supported; supported: %s",
				version, strings.Join(knownRevisions, ", ")))
		return false
	case version < protocolStateless:
		writeRPCError(w, r, http.StatusBadRequest, msg.id, mcp.CodeInvalidRequest,
			"Mcp-Session-Id required: send initialize first")
		return false
	}
	return true
}

// open starts a process and its session (with the session ID id, or none
// for a single request). When it cannot, it answers the request and
// returns false.
func (s *stdioServer) open(
	w http.ResponseWriter,
	r *http.Request,
	msg *message,
	id string,
) (*stdioSession, bool) {
	// The relay verified the assertion before the request got here.
	agent := token.AssertedAgent(r.Header.Get(token.AssertionHeader))
	ss, err := s.startSession(id, agent)
	switch {
	case errors.Is(err, errAgentAtCapacity):
		s.logger.Warn("stdio process cap of an agent reached, request refused",
			logkey.AgentID, agent, logkey.MaxProcesses, s.res.MaxProcessesPerAgent)
		w.Header().Set("Retry-After", retryAfter)
		writeRPCError(w, r, http.StatusServiceUnavailable, msg.id, mcp.CodeUpstreamFailed,
			fmt.Sprintf("agent %s already runs its maximum of %d processes of resource %s "+
				"(max_processes_per_agent of connector %s); end a session first",
				agent, s.res.MaxProcessesPerAgent, s.res.Name, s.connector))
		return nil, false
	case errors.Is(err, errAtCapacity):
		s.logger.Warn("stdio process cap reached, request refused",
			logkey.MaxProcesses, s.res.MaxProcesses)
		w.Header().Set("Retry-After", retryAfter)
		writeRPCError(w, r, http.StatusServiceUnavailable, msg.id, mcp.CodeUpstreamFailed,
			fmt.Sprintf("resource %s already runs its maximum of %d processes (max_processes of connector %s); retry once a session has ended",
				s.res.Name, s.res.MaxProcesses, s.connector))
		return nil, false
	case errors.Is(err, errStopping):
		writeRPCError(w, r, http.StatusServiceUnavailable, msg.id, mcp.CodeUpstreamFailed,
			fmt.Sprintf("connector %s is stopping and starts no more processes", s.connector))
		return nil, false
	case err != nil:
		s.logger.Error("stdio server did not start", logkey.Error, err)
		writeRPCError(w, r, http.StatusBadGateway, msg.id, mcp.CodeUpstreamFailed,
			fmt.Sprintf("connector %s could not start the process of resource %s; its log says why",
				s.connector, s.res.Name))
		return nil, false
	}
	return ss, true
}

// startSession takes a process slot, starts the process and registers
// its session.
func (s *stdioServer) startSession(id, agent string) (*stdioSession, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errStopping
	}
	if s.procs >= s.res.MaxProcesses {
		s.mu.Unlock()
		return nil, errAtCapacity
	}
	perAgent := s.res.MaxProcessesPerAgent
	if perAgent <= 0 {
		perAgent = s.res.MaxProcesses
	}
	if s.byAgent[agent] >= perAgent {
		s.mu.Unlock()
		return nil, errAgentAtCapacity
	}
	s.procs++
	s.byAgent[agent]++
	s.running.Add(1)
	s.mu.Unlock()
	release := func() { s.release(agent) }

	logger := s.logger
	if id != "" {
		logger = logger.With(logkey.MCPSession, id)
	}
	p, err := startProcess(s.res, logger, release)
	if err != nil {
		release()
		return nil, err
	}
	ss := newStdioSession(s, id, p, logger.With(logkey.PID, p.pid))

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		// Nobody reads its stdout yet.
		p.abandon()
		return nil, errStopping
	}
	s.sessions[ss] = struct{}{}
	if id != "" {
		s.byID[id] = ss
	}
	s.mu.Unlock()
	ss.logger.Debug("stdio process started")
	go ss.pump()
	go ss.writeReplies()
	return ss, nil
}

// release gives back the slot of a reaped process of agent.
func (s *stdioServer) release(agent string) {
	s.mu.Lock()
	s.procs--
	if s.byAgent[agent]--; s.byAgent[agent] <= 0 {
		delete(s.byAgent, agent)
	}
	s.mu.Unlock()
	s.running.Done()
}

// errAgentAtCapacity refuses a process to an agent at its own cap.
var errAgentAtCapacity = errors.New("the agent runs its maximum of processes")

// forget removes a closing session: its ID is unknown from now on.
func (s *stdioServer) forget(ss *stdioSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
	if ss.id != "" {
		delete(s.byID, ss.id)
	}
}

func (s *stdioServer) lookup(id string) *stdioSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// serveGET opens the session's standalone SSE stream, for messages the
// process sends outside of any request.
func (s *stdioServer) serveGET(w http.ResponseWriter, r *http.Request) {
	if !accepts(r, "text/event-stream") {
		writeRPCError(w, r, http.StatusNotAcceptable, nil, mcp.CodeInvalidRequest,
			"a GET opens an SSE stream: Accept must list text/event-stream")
		return
	}
	if r.Header.Get(headerLastEventID) != "" {
		writeRPCError(w, r, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"this server keeps no event history, so streams cannot be resumed")
		return
	}
	sid := r.Header.Get(headerSession)
	if sid == "" {
		writeRPCError(w, r, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"a GET needs the Mcp-Session-Id of its session")
		return
	}
	ss := s.lookup(sid)
	if ss == nil {
		writeSessionGone(w, r, nil)
		return
	}
	ss.serveGET(w, r)
}

// serveDELETE ends a session; it answers once the process is gone.
func (s *stdioServer) serveDELETE(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get(headerSession)
	if sid == "" {
		writeRPCError(w, r, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"a DELETE needs the Mcp-Session-Id of its session")
		return
	}
	ss := s.lookup(sid)
	if ss == nil {
		writeSessionGone(w, r, nil)
		return
	}
	ss.close(closeDeleted, "")
	w.WriteHeader(http.StatusNoContent)
}

// writeSessionGone answers for an unknown or ended session, with 404 as
// MCP asks, so that the client starts a new one.
func writeSessionGone(w http.ResponseWriter, r *http.Request, id json.RawMessage) {
	writeRPCError(w, r, http.StatusNotFound, id, mcp.CodeSessionNotFound,
		"session not found: it ended or never existed; initialize a new one")
}

// writeRPCError answers with a JSON-RPC error that carries the edge's
// request ID, as the connector's other errors do.
func writeRPCError(
	w http.ResponseWriter,
	r *http.Request,
	status int,
	id json.RawMessage,
	code int,
	msg string,
) {
	var data any
	if rid := r.Header.Get(headerRequestID); rid != "" {
		data = map[string]string{"request_id": rid}
	}
	mcp.WriteError(w, status, id, code, msg, data)
}

// accepts reports whether the request's Accept header lists the media
// type (or a wildcard that covers it).
func accepts(r *http.Request, mediaType string) bool {
	major, _, _ := strings.Cut(mediaType, "/")
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			t, _, _ := strings.Cut(part, ";")
			t = strings.ToLower(strings.TrimSpace(t))
			if t == mediaType || t == "*/*" || t == major+"/*" {
				return true
			}
		}
	}
	return false
}
