package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

// Header names the edge reads or sets.
const (
	headerSession   = "Mcp-Session-Id"
	headerRequestID = "Airlock-Request-Id"
	// maxSessionIDLen bounds the session IDs the edge remembers.
	maxSessionIDLen = 256
)

func (e *Edge) frontTLS() *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: e.serving.get,
		// Health checks, enrollment and the trust bundle come without a
		// certificate; every MCP endpoint demands one (see authenticate).
		ClientAuth:       tls.VerifyClientCertIfGiven,
		NextProtos:       []string{"h2", "http/1.1"},
		VerifyConnection: e.refuseRevoked,
		Time:             e.now,
	}
	return e.withCurrentRoots(base)
}

// withCurrentRoots makes every handshake verify client certificates
// against the roots trusted at that moment, so that a CA rotation takes
// effect without a restart.
func (e *Edge) withCurrentRoots(base *tls.Config) *tls.Config {
	outer := base.Clone()
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = e.ca.Pool()
		return c, nil
	}
	outer.ClientCAs = e.ca.Pool()
	return outer
}

// now is the edge's clock: join-token expiry, token issue, and the
// validity of presented certificates, at every request and (as the TLS
// configurations' Time) at every handshake. Tests move it.
func (e *Edge) now() time.Time {
	if f := e.clockOverride.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// refuseRevoked fails the handshake of a revoked certificate.
func (e *Edge) refuseRevoked(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 {
		return nil
	}
	leaf := cs.VerifiedChains[0][0]
	id, err := certs.IdentityOf(leaf)
	if err != nil {
		return nil // refused later, with a clearer answer than an alert
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		return errors.New(revokedMessage(id, rev))
	}
	return nil
}

func (e *Edge) newFrontDoor() *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(e.route),
		TLSConfig:         e.frontTLS(),
		ReadHeaderTimeout: e.cfg.ReadHeaderTimeout,
		IdleTimeout:       e.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(e.logger.Handler(), slog.LevelDebug),
	}
}

func (e *Edge) newOpsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", e.metrics.handler())
	mux.HandleFunc("GET /healthz", e.healthz)
	mux.HandleFunc("GET /readyz", e.readyz)
	return &http.Server{Handler: mux, ReadHeaderTimeout: e.cfg.ReadHeaderTimeout}
}

// route dispatches front door requests. It matches the raw path exactly:
// no cleaning, no decoding of %2f, so that /mcp/../x or /mcp/a%2fb name no
// resource.
func (e *Edge) route(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// A chunked HTTP/1.1 request may also have carried a
		// Content-Length, which the server drops before we see it: the
		// mark of a smuggling attempt. Whatever follows its body on the
		// connection is not read as another request (RFC 9112, 6.1).
		w.Header().Set("Connection", "close")
	}
	switch {
	case r.URL.Path == "/healthz":
		e.healthz(w, r)
	case r.URL.Path == "/readyz":
		e.readyz(w, r)
	case strings.HasPrefix(r.URL.Path, "/mcp/"):
		e.serveMCP(w, r)
	case r.URL.Path == enroll.PathEnroll:
		e.serveEnroll(w, r)
	case r.URL.Path == enroll.PathRenew:
		e.serveRenew(w, r)
	case r.URL.Path == enroll.PathTrustBundle && r.Method == http.MethodGet:
		e.serveTrustBundle(w, r)
	case strings.HasPrefix(r.URL.Path, adminPrefix):
		e.serveRemoteAdmin(w, r)
	case r.URL.Path == token.PathToken:
		e.serveToken(w, r)
	case r.URL.Path == token.PathJWKS && r.Method == http.MethodGet:
		e.serveJWKS(w, r)
	case r.URL.Path == token.PathASMetadata && r.Method == http.MethodGet:
		e.serveASMetadata(w, r)
	case strings.HasPrefix(r.URL.Path, token.PathPRMetadata+"/mcp/") && r.Method == http.MethodGet:
		e.servePRMetadata(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (e *Edge) healthz(w http.ResponseWriter, _ *http.Request) {
	io.WriteString(w, "ok\n")
}

func (e *Edge) readyz(w http.ResponseWriter, _ *http.Request) {
	if !e.ready.Load() || e.policy.Revision() == "" {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

// exchange is what the edge knows about one agent request while serving
// it.
type exchange struct {
	id       string
	start    time.Time
	resource string
	agent    certs.Identity
	leaf     *x509.Certificate
	status   int
	// From the access token.
	scope   token.Scope
	tokenID string
	claims  *token.AccessClaims
	// From the body: the JSON-RPC method ("" for a response, GET and
	// DELETE), its target, id and params, and the message kind.
	method string
	target string
	kind   string
	msgID  json.RawMessage
	params map[string]any // never nil after a POST was read
	// plugins are the plugins' verdicts, for the audit record.
	plugins []string
	// connector will carry the request, once picked.
	connector string
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fail answers with a JSON-RPC error that carries the request ID.
func (x *exchange) fail(w http.ResponseWriter, status, code int, msg string) {
	x.status = status
	mcp.WriteError(w, status, nil, code, msg, map[string]string{"request_id": x.id})
}

func (e *Edge) serveMCP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{id: newRequestID(), start: time.Now(), resource: "-"}
	w.Header().Set(headerRequestID, x.id)
	defer e.observe(r, x)

	if !e.authenticate(w, r, x) {
		return
	}
	// The request ends when its certificate is revoked or expires, even
	// in the middle of a long SSE stream.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	ctx, cancelExpiry := context.WithTimeoutCause(ctx, x.leaf.NotAfter.Sub(e.now()), ErrCertExpired)
	defer cancelExpiry()
	defer e.active.track(x.agent, x.leaf, cancel)()
	r = r.WithContext(ctx)
	if !e.checkTarget(w, r, x) || !e.authorizeToken(w, r, x) {
		return
	}
	body, ok := e.readBody(w, r, x)
	if !ok || !e.readMessage(w, r, x, body) || !e.checkScope(w, x, x.method, x.target) {
		return
	}
	// The connector is chosen first so that the policy and the audit
	// record know it; nothing is sent before the decision.
	l, ok := e.pickLink(w, r, x)
	if !ok {
		return
	}
	x.connector = l.connector
	if !e.decide(w, r, x) {
		return
	}
	e.forward(w, r, x, l, body)
}

func (e *Edge) observe(r *http.Request, x *exchange) {
	status := fmt.Sprint(x.status)
	e.metrics.requests.WithLabelValues(x.resource, r.Method, mcpMethodLabel(x.method), status).Inc()
	if e.logger.Enabled(r.Context(), slog.LevelDebug) {
		e.logger.DebugContext(r.Context(), "request done",
			logkey.RequestID, x.id, logkey.Resource, x.resource, logkey.AgentID, x.agent.String(),
			"http_method", r.Method, logkey.Status, x.status, logkey.Duration, time.Since(x.start))
	}
}

// authenticate checks the agent's certificate: a verified chain to the
// CA, a SPIFFE identity of this trust domain, and the agent kind.
func (e *Edge) authenticate(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	if r.TLS == nil {
		x.fail(w, http.StatusUnauthorized, mcp.CodeUnauthenticated, "an Airlock agent certificate is required")
		return false
	}
	id, leaf, err := certs.PeerIdentity(*r.TLS, e.ca.TrustDomain(), certs.KindAgent)
	var wrongKind *certs.WrongKindError
	switch {
	case errors.As(err, &wrongKind):
		x.fail(w, http.StatusForbidden, mcp.CodeForbidden,
			fmt.Sprintf("certificate identity %s is a %s, not an agent", wrongKind.Identity, wrongKind.Identity.Kind))
		return false
	case err != nil:
		e.logger.DebugContext(r.Context(), "agent authentication failed", logkey.RequestID, x.id, logkey.Error, err)
		x.fail(w, http.StatusUnauthorized, mcp.CodeUnauthenticated, "an Airlock agent certificate is required")
		return false
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		x.fail(w, http.StatusUnauthorized, mcp.CodeUnauthenticated, revokedMessage(id, rev))
		return false
	}
	now := e.now()
	if now.After(leaf.NotAfter) {
		x.fail(w, http.StatusUnauthorized, mcp.CodeUnauthenticated,
			fmt.Sprintf("certificate of %s expired at %s", id, leaf.NotAfter.UTC().Format(time.RFC3339)))
		return false
	}
	e.seen.touch(id.String(), now)
	x.agent, x.leaf = id, leaf
	return true
}

// resourceOf returns the resource an MCP endpoint path names. Only the
// exact form /mcp/NAME of a known resource is one: no escapes (a RawPath
// means the path had some that decode differently), no dot segments, no
// trailing slash, so that the path checked is the path routed.
func resourceOf(u *url.URL, known func(string) bool) (string, bool) {
	name, ok := strings.CutPrefix(u.Path, "/mcp/")
	if !ok || u.RawPath != "" || strings.ContainsAny(name, "/%\\") || !known(name) {
		return "", false
	}
	return name, true
}

// checkTarget checks the resource, the HTTP method and the Origin.
func (e *Edge) checkTarget(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	name, ok := resourceOf(r.URL, func(n string) bool { _, ok := e.resources[n]; return ok })
	if !ok {
		x.fail(w, http.StatusNotFound, mcp.CodeUnknownResource, fmt.Sprintf("no MCP resource at %s", r.URL.Path))
		return false
	}
	x.resource = name
	// MCP endpoints take no query: nothing that reaches the upstream may
	// escape the checks (and the identity assertion's digest).
	if r.URL.RawQuery != "" {
		x.fail(w, http.StatusBadRequest, mcp.CodeInvalidRequest,
			"MCP endpoints take no query string (an access token goes in the Authorization header)")
		return false
	}

	// MCP Streamable HTTP: servers must validate Origin to stop DNS
	// rebinding; a request without one is not from a browser.
	if o := r.Header.Get("Origin"); o != "" && !slices.Contains(e.cfg.AllowedOrigins, o) {
		x.fail(w, http.StatusForbidden, mcp.CodeForbidden, fmt.Sprintf("origin %s is not allowed", o))
		return false
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
		return true
	}
	w.Header().Set("Allow", "GET, POST, DELETE")
	x.fail(w, http.StatusMethodNotAllowed, mcp.CodeInvalidRequest, fmt.Sprintf("method %s is not used by MCP", r.Method))
	return false
}

// readBody reads the whole body, up to the limit, before anything is
// forwarded: what crosses the tunnel is exactly what the edge read.
func (e *Edge) readBody(w http.ResponseWriter, r *http.Request, x *exchange) ([]byte, bool) {
	if r.ContentLength > e.cfg.MaxBodyBytes {
		x.fail(w, http.StatusRequestEntityTooLarge, mcp.CodeBodyTooLarge,
			fmt.Sprintf("request body of %d bytes exceeds the limit of %d", r.ContentLength, e.cfg.MaxBodyBytes))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		x.fail(w, http.StatusRequestEntityTooLarge, mcp.CodeBodyTooLarge,
			fmt.Sprintf("request body exceeds the limit of %d bytes", e.cfg.MaxBodyBytes))
		return nil, false
	case err != nil:
		x.status = 499
		return nil, false
	}
	e.metrics.bytes.WithLabelValues(x.resource, "in").Add(float64(len(body)))
	return body, true
}

// readMessage parses a POST body strictly: exactly one JSON-RPC message,
// so that what the scope (and later the policy) judges is what the
// upstream will read. GET and DELETE must carry no body. The
// 2026-07-28 routing headers, when present, must agree with the body, so
// that an upstream routing on them sees what was checked.
func (e *Edge) readMessage(w http.ResponseWriter, r *http.Request, x *exchange, body []byte) bool {
	if r.Method != http.MethodPost {
		if len(body) > 0 {
			x.fail(w, http.StatusBadRequest, mcp.CodeInvalidRequest,
				fmt.Sprintf("a %s request to an MCP endpoint carries no body", r.Method))
			return false
		}
		x.kind = kindStream
		if r.Method == http.MethodDelete {
			x.kind = kindEnd
		}
		return true
	}
	m, err := mcp.Parse(body)
	if err != nil {
		code := mcp.CodeInvalidRequest
		var pe *mcp.ParseError
		if errors.As(err, &pe) {
			code = pe.Code
		}
		x.fail(w, http.StatusBadRequest, code, err.Error())
		return false
	}
	x.method, x.target, x.msgID = m.Method, m.Name, m.ID
	// Decoded once: the policy input, list filtering and the audit record
	// all read it.
	x.params = map[string]any{}
	if len(m.Params) > 0 {
		json.Unmarshal(m.Params, &x.params)
	}
	switch {
	case m.IsResponse():
		x.kind = kindResponse
	case m.ID == nil:
		x.kind = kindNotification
	default:
		x.kind = kindRequest
	}
	if err := mcp.CheckRoutingHeaders(r.Header, m); err != nil {
		x.fail(w, http.StatusBadRequest, mcp.CodeHeaderMismatch, err.Error())
		return false
	}
	return true
}

// pickLink chooses the tunnel: the connector pinned to the MCP session if
// the request names one, else the least busy connector of the resource.
func (e *Edge) pickLink(w http.ResponseWriter, r *http.Request, x *exchange) (*link, bool) {
	sid := r.Header.Get(headerSession)
	if sid == "" {
		l := e.registry.pick(x.resource, "", "")
		if l == nil {
			x.fail(w, http.StatusServiceUnavailable, mcp.CodeNoConnector,
				fmt.Sprintf("no connector is serving resource %s right now", x.resource))
			return nil, false
		}
		return l, true
	}
	b, ok := e.sessions.lookup(x.resource, sid)
	if !ok || b.agent != x.agent.String() {
		x.fail(w, http.StatusNotFound, mcp.CodeSessionNotFound, "session not found")
		return nil, false
	}
	l := e.registry.pick(x.resource, b.connector, b.instance)
	if l == nil {
		e.sessions.forget(x.resource, sid)
		x.fail(w, http.StatusNotFound, mcp.CodeSessionNotFound,
			"session not found: the connector that served it is gone; start a new session")
		return nil, false
	}
	return l, true
}
