package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/airlockhq/airlock/pkg/token"
)

// env is one throwaway deployment: a CA minted for the test, and the
// edges, connectors and upstreams the test starts on loopback.
type env struct {
	t       *testing.T
	dir     string
	dataDir string
	ca      *certs.Authority
	caFile  string
	// connLogger, if set, receives the logs of the connectors started
	// from now on.
	connLogger *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "edge")
	ca, err := certs.Init(edge.CADir(dataDir), certs.DefaultTrustDomain)
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	writePolicy(t, dataDir, allowAll)
	return &env{t: t, dir: dir, dataDir: dataDir, ca: ca, caFile: certs.RootFile(edge.CADir(dataDir))}
}

// allowAll is the policy of tests that are not about the policy.
const allowAll = "package airlock.authz\n\nallow := true\n"

// writePolicy writes rego as the only policy file of the edge in dataDir.
func writePolicy(t *testing.T, dataDir, rego string) {
	t.Helper()
	dir := filepath.Join(dataDir, "policy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// issue writes a credential for kind/name and returns its files.
func (v *env) issue(kind certs.Kind, name string) (certFile, keyFile string) {
	v.t.Helper()
	cred, err := v.ca.Issue(context.Background(), certs.SignRequest{Kind: kind, Name: name, Lifetime: time.Hour})
	if err != nil {
		v.t.Fatalf("issuing %s %s: %v", kind, name, err)
	}
	certFile = filepath.Join(v.dir, string(kind), name+".crt")
	keyFile = filepath.Join(v.dir, string(kind), name+".key")
	if err := cred.WriteFiles(certFile, keyFile); err != nil {
		v.t.Fatal(err)
	}
	return certFile, keyFile
}

// startEdge starts an edge on loopback with the given resources; mod may
// change its config before it starts.
func (v *env) startEdge(resources []edge.Resource, mod func(*edge.Config)) *edge.Edge {
	v.t.Helper()
	cfg := edge.Config{
		DataDir:   v.dataDir,
		Listen:    "127.0.0.1:0",
		OpsListen: "off",
		Resources: resources,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := edge.New(cfg.WithDefaults(), testLogger(v.t))
	if err != nil {
		v.t.Fatalf("creating edge: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		v.t.Fatalf("starting edge: %v", err)
	}
	v.t.Cleanup(func() { shutdownEdge(v.t, e) })
	return e
}

func shutdownEdge(t *testing.T, e *edge.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("edge shutdown: %v", err)
	}
}

// upstream is an MCP server behind a connector, wrapped so the test sees
// every request that reached it.
type upstream struct {
	url   string
	stats *demoserver.Stats
	rec   *recorder
}

// recorder remembers what reached the upstream: the headers of every
// request and how many request contexts were cancelled.
type recorder struct {
	next      http.Handler
	requests  atomic.Int64
	cancelled atomic.Int64
	// mu guards headers and methods.
	mu      sync.Mutex
	headers []http.Header
	methods []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.methods = append(r.methods, req.Method)
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
	if req.Context().Err() != nil {
		r.cancelled.Add(1)
	}
}

// sawMethod reports whether a request with the HTTP method and the MCP
// session ID reached the upstream.
func (r *recorder) sawMethod(method, session string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, h := range r.headers {
		if r.methods[i] == method && h.Get("Mcp-Session-Id") == session {
			return true
		}
	}
	return false
}

func (r *recorder) seen() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

func (v *env) startUpstream(stateless bool) *upstream {
	v.t.Helper()
	h, stats := demoserver.HandlerWithStats(demoserver.Options{SandboxDir: v.t.TempDir(), MaxRequestBodyBytes: -1}, stateless)
	rec := &recorder{next: h}
	srv := httptest.NewServer(rec)
	v.t.Cleanup(srv.Close)
	return &upstream{url: srv.URL + "/mcp", stats: stats, rec: rec}
}

// runningConnector is a connector running in the test process on a UDP
// socket the test can pull away.
type runningConnector struct {
	c      *connector.Connector
	pc     net.PacketConn
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startConnector runs a connector for the resources and waits for its
// tunnels to be acknowledged.
func (v *env) startConnector(e *edge.Edge, name string, res []connector.Resource, mod func(*connector.Config)) *runningConnector {
	v.t.Helper()
	certFile, keyFile := v.issue(certs.KindConnector, name)
	cfg := connector.Config{
		Name:      name,
		Edges:     []string{e.TunnelAddr().String()},
		CAFile:    v.caFile,
		CertFile:  certFile,
		KeyFile:   keyFile,
		Resources: res,
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg = cfg.WithDefaults()
	rc := v.runConnector(cfg)
	waitFor(v.t, fmt.Sprintf("connector %s to connect", name), func() bool { return rc.c.Connected() == cfg.Connections })
	return rc
}

func (v *env) runConnector(cfg connector.Config) *runningConnector {
	v.t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		v.t.Fatal(err)
	}
	logger := testLogger(v.t)
	if v.connLogger != nil {
		logger = v.connLogger
	}
	c, err := connector.New(cfg, connector.Options{PacketConn: pc, Logger: logger})
	if err != nil {
		v.t.Fatalf("creating connector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConnector{c: c, pc: pc, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	v.t.Cleanup(rc.stop)
	return rc
}

// stop drains the connector and waits for it to exit.
func (rc *runningConnector) stop() {
	rc.once.Do(func() {
		rc.cancel()
		<-rc.done
	})
}

// kill cuts the connector off the network at once, as a crash would: no
// goodbye reaches the edge.
func (rc *runningConnector) kill() {
	rc.pc.Close()
	rc.stop()
}

// waitFor polls cond until it holds; it fails the test after 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// agentTLS returns a client TLS config with a fresh agent certificate.
func (v *env) agentTLS(name string) *tls.Config {
	v.t.Helper()
	certFile, keyFile := v.issue(certs.KindAgent, name)
	return v.clientTLS(certFile, keyFile)
}

func (v *env) clientTLS(certFile, keyFile string) *tls.Config {
	v.t.Helper()
	cred, err := certs.LoadCredential(certFile, keyFile)
	if err != nil {
		v.t.Fatal(err)
	}
	return &tls.Config{
		RootCAs:      v.ca.Pool(),
		Certificates: []tls.Certificate{cred.TLSCertificate()},
		MinVersion:   tls.VersionTLS13,
	}
}

// httpClient is an agent's HTTPS client: it presents the certificate of
// tc and adds an access token to MCP requests (see withTokens).
func httpClient(t *testing.T, tc *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return withTokens(tr)
}

// holderClient is httpClient for an enrolled holder.
func holderClient(h *enroll.Holder) *http.Client {
	base := h.HTTPClient().Transport
	binding := func() string { return token.Thumbprint(h.Credential().Leaf()) }
	return &http.Client{Transport: lenientTokens{tokens: token.NewTransport(base, binding), base: base}}
}

// withTokens fetches and adds access tokens the way agents do. A request
// whose token the edge will not give (no certificate, a connector's, an
// unknown resource) goes without one, so that refusal tests see what the
// MCP endpoint answers such a request.
func withTokens(base http.RoundTripper) *http.Client {
	return &http.Client{Transport: lenientTokens{tokens: token.NewTransport(base, nil), base: base}}
}

type lenientTokens struct {
	tokens *token.Transport
	base   http.RoundTripper
}

// CloseIdleConnections closes the idle connections of the transport.
func (l lenientTokens) CloseIdleConnections() { l.tokens.CloseIdleConnections() }

func (l lenientTokens) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.tokens.RoundTrip(req)
	var refused *token.FetchError
	if errors.As(err, &refused) {
		return l.base.RoundTrip(req)
	}
	return resp, err
}

func mcpURL(e *edge.Edge, resource string) string {
	return "https://" + e.Addr().String() + "/mcp/" + resource
}

// connectMCP opens an MCP session through the edge with the go-sdk client.
func connectMCP(t *testing.T, client *http.Client, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-test", Version: "1"}, opts)
	cs, err := c.Connect(testContext(t), &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: client, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connecting MCP client to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// rpc posts one JSON-RPC message and returns the response and its body.
func rpc(t *testing.T, ctx context.Context, client *http.Client, url, body string, hdr http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// echoCall is a stateless tools/call of the demo server's echo tool.
func echoCall(id int, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":%q}}}`, id, text)
}

func textOf(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	var b bytes.Buffer
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// testLogger sends logs to the test log when AIRLOCK_TEST_LOGS is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("AIRLOCK_TEST_LOGS") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
