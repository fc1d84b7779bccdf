package edge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

func TestFrontDoorRefusals(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{
		{Name: "demo", Connectors: []string{"c1"}},
		{Name: "idle", Connectors: []string{"c9"}},
	}, func(c *edge.Config) { c.AllowedOrigins = []string{"https://console.example"} })
	up := v.startUpstream(true)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	ctx := testContext(t)

	agent := httpClient(t, v.agentTLS("alice"))
	conn := httpClient(t, v.clientTLS(v.issue(certs.KindConnector, "c1")))
	anonymous := httpClient(t, &tls.Config{RootCAs: v.ca.Pool()})
	base := "https://" + e.Addr().String()
	body := echoCall(1, "hi")

	cases := []struct {
		name   string
		client *http.Client
		method string
		path   string
		header http.Header
		status int
		code   int
	}{
		{"no client certificate", anonymous, http.MethodPost, "/mcp/demo", nil, http.StatusUnauthorized, airmcp.CodeUnauthenticated},
		{"connector certificate", conn, http.MethodPost, "/mcp/demo", nil, http.StatusForbidden, airmcp.CodeForbidden},
		{"unknown resource", agent, http.MethodPost, "/mcp/nope", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"resource without connector", agent, http.MethodPost, "/mcp/idle", nil, http.StatusServiceUnavailable, airmcp.CodeNoConnector},
		{"origin not allowed", agent, http.MethodPost, "/mcp/demo", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden, airmcp.CodeForbidden},
		{"method not used by MCP", agent, http.MethodPut, "/mcp/demo", nil, http.StatusMethodNotAllowed, airmcp.CodeInvalidRequest},
		{"dot segments", agent, http.MethodPost, "/mcp/../mcp/demo", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"encoded dots", agent, http.MethodPost, "/mcp/%2e%2e/mcp/demo", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"encoded slash", agent, http.MethodPost, "/mcp/demo%2fx", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"encoded name", agent, http.MethodPost, "/mcp/%64emo", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"trailing slash", agent, http.MethodPost, "/mcp/demo/", nil, http.StatusNotFound, airmcp.CodeUnknownResource},
		{"foreign session id", agent, http.MethodPost, "/mcp/demo", http.Header{"Mcp-Session-Id": {"made-up"}}, http.StatusNotFound, airmcp.CodeSessionNotFound},
		{"Mcp-Method disagrees with the body", agent, http.MethodPost, "/mcp/demo",
			http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/list"}},
			http.StatusBadRequest, airmcp.CodeHeaderMismatch},
		{"Mcp-Name disagrees with the body", agent, http.MethodPost, "/mcp/demo",
			http.Header{
				"Mcp-Protocol-Version": {"2026-07-28"},
				"Mcp-Method":           {"tools/call"},
				"Mcp-Name":             {"read_file"},
			},
			http.StatusBadRequest, airmcp.CodeHeaderMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, base+tc.path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(tc.path, "%.") || strings.HasSuffix(tc.path, "/") {
				// Set the path raw so that no client-side cleaning hides the
				// trick (and no token is fetched for such a path).
				req.URL.Opaque = "//" + e.Addr().String() + tc.path
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, vs := range tc.header {
				req.Header[k] = vs
			}
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			checkRPCError(t, resp, data, tc.status, tc.code)
		})
	}
	if n := up.rec.requests.Load(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}

	// The same request, done right, goes through: the refusals above were
	// about what each case changed.
	resp, data, err := rpc(t, ctx, agent, mcpURL(e, "demo"), body, http.Header{"Origin": {"https://console.example"}})
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"text":"hi"`) {
		t.Fatalf("allowed request: %v, %s, %v", resp, data, err)
	}
}

func TestCredentialsStayAtTheEdge(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	ctx := testContext(t)
	client := httpClient(t, v.agentTLS("alice"))
	hdr := http.Header{
		"Authorization":    {"Bearer secret-token"},
		"Cookie":           {"session=secret"},
		"Airlock-Agent-Id": {"spiffe://airlock.local/agent/root"},
	}
	forged := "forged.assertion.root"
	call := http.Header{token.AssertionHeader: {forged}}
	for k, vs := range hdr {
		call[k] = vs
	}
	resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(1, "x"), call)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("call: %v, %s, %v", resp, body, err)
	}
	seen := up.rec.seen()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(seen))
	}
	for k := range hdr {
		if got := seen[0].Get(k); got != "" {
			t.Errorf("header %s reached the upstream: %q", k, got)
		}
	}
	// The one assertion the upstream sees is the edge's, naming alice.
	got := seen[0].Values(token.AssertionHeader)
	const alice = "spiffe://airlock.local/agent/alice"
	if len(got) != 1 || got[0] == forged || token.AssertedAgent(got[0]) != alice {
		t.Errorf("the upstream saw assertions %q, want only the edge's for alice", got)
	}
}

func TestSessionBelongsToItsAgent(t *testing.T) {
	v, e, up := demoEnv(t, false, nil, nil)
	ctx := testContext(t)
	cs := connectMCP(t, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), nil)

	mallory := httpClient(t, v.agentTLS("mallory"))
	resp, body, err := rpc(t, ctx, mallory, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		http.Header{"Mcp-Session-Id": {cs.ID()}, "Mcp-Protocol-Version": {"2025-11-25"}})
	if err != nil {
		t.Fatal(err)
	}
	checkRPCError(t, resp, body, http.StatusNotFound, airmcp.CodeSessionNotFound)
	if n := upstreamSaw(up, "mallory"); n != 0 {
		t.Errorf("%d requests of mallory in alice's session reached the upstream", n)
	}

	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Errorf("the owner's session stopped working: %v", err)
	}
}

// upstreamSaw counts the requests that reached the upstream on behalf of
// agent, by the identity assertion the edge added to each: other agents'
// traffic may reach it meanwhile.
func upstreamSaw(up *upstream, agent string) int {
	id := "spiffe://airlock.local/agent/" + agent
	n := 0
	for _, h := range up.rec.seen() {
		if token.AssertedAgent(h.Get(token.AssertionHeader)) == id {
			n++
		}
	}
	return n
}

func TestForeignCertificateRefused(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	ctx := testContext(t)

	other, err := certs.Init(filepath.Join(t.TempDir(), "other-ca"), certs.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	foreign := func(kind certs.Kind, name string) tls.Certificate {
		cred, err := other.Issue(ctx, certs.SignRequest{Kind: kind, Name: name, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return cred.TLSCertificate()
	}

	t.Run("front door", func(t *testing.T) {
		tc := &tls.Config{RootCAs: v.ca.Pool(), Certificates: []tls.Certificate{foreign(certs.KindAgent, "alice")}}
		// With TLS 1.3 the server's alert may reach the client as a bad
		// certificate or as a connection that could not be set up; either
		// way no HTTP answer comes back.
		resp, _, err := rpc(t, ctx, httpClient(t, tc), mcpURL(e, "demo"), echoCall(1, "x"), nil)
		if err == nil {
			t.Fatalf("request with a foreign agent certificate got status %d, want a TLS failure", resp.StatusCode)
		}
	})
	t.Run("tunnel", func(t *testing.T) {
		tc := &tls.Config{RootCAs: v.ca.Pool(), Certificates: []tls.Certificate{foreign(certs.KindConnector, "c1")}, NextProtos: []string{tunnel.ALPN}}
		_, err := sayHello(ctx, e, tc, "c1", "demo")
		if err == nil {
			t.Fatal("a connector with a foreign certificate got an answer to its hello")
		}
	})
}

func TestTunnelRefusals(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{
		{Name: "demo", Connectors: []string{"c1"}},
		{Name: "payroll", Connectors: []string{"c2"}},
	}, func(c *edge.Config) { c.OpsListen = "127.0.0.1:0" })
	ctx := testContext(t)
	refusals := func() float64 { return metricValue(t, e, "airlock_edge_connector_refusals_total") }
	tunnelTLS := func(kind certs.Kind, name string) *tls.Config {
		tc := v.clientTLS(v.issue(kind, name))
		tc.NextProtos = []string{tunnel.ALPN}
		return tc
	}

	cases := []struct {
		name      string
		tls       *tls.Config
		hello     string
		resources []string
		reason    string
	}{
		{"agent certificate", tunnelTLS(certs.KindAgent, "c1"), "c1", []string{"demo"}, "agent"},
		{"name differs from certificate", tunnelTLS(certs.KindConnector, "c1"), "c2", []string{"payroll"}, "certificate"},
		{"resource not allowed", tunnelTLS(certs.KindConnector, "c1"), "c1", []string{"demo", "payroll"}, "may not serve payroll"},
		{"unknown resource", tunnelTLS(certs.KindConnector, "c1"), "c1", []string{"ghost"}, "may not serve ghost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer, err := sayHello(ctx, e, tc.tls, tc.hello, tc.resources...)
			if err != nil {
				t.Fatalf("hello: %v", err)
			}
			if answer.Type != tunnel.TypeRefusal || !strings.Contains(answer.Refusal.Reason, tc.reason) {
				t.Fatalf("answer = %+v, want a refusal mentioning %q", answer, tc.reason)
			}
		})
	}
	if got := refusals(); got != float64(len(cases)) {
		t.Errorf("refusal metric = %v, want %d", got, len(cases))
	}
	if n := len(e.Tunnels()); n != 0 {
		t.Errorf("edge holds %d tunnels after refusing every hello", n)
	}

	// The connector itself reports the refusal and keeps retrying with
	// backoff rather than counting itself connected.
	certFile, keyFile := v.issue(certs.KindConnector, "c1")
	rc := v.runConnector(connector.Config{
		Name: "c1", Edges: []string{e.TunnelAddr().String()}, CAFile: v.caFile, CertFile: certFile, KeyFile: keyFile,
		Resources: []connector.Resource{{Name: "payroll", URL: "http://127.0.0.1:1/mcp"}},
	}.WithDefaults())
	waitFor(t, "the edge to refuse the connector", func() bool { return refusals() > float64(len(cases)) })
	if rc.c.Connected() != 0 {
		t.Error("a refused connector counts itself connected")
	}
}

// TestStolenConnectorNameRefused: a connector that says hello under the
// name of another one, which is connected, is refused; the real one keeps
// its tunnel and its traffic.
func TestStolenConnectorNameRefused(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{
		{Name: "demo", Connectors: []string{"c1"}},
		{Name: "payroll", Connectors: []string{"c2"}},
	}, nil)
	up := v.startUpstream(true)
	v.startConnector(e, "c2", []connector.Resource{{Name: "payroll", URL: up.url}}, nil)
	ctx := testContext(t)
	before := e.Tunnels()

	impostor := v.clientTLS(v.issue(certs.KindConnector, "c1"))
	impostor.NextProtos = []string{tunnel.ALPN}
	answer, err := sayHello(ctx, e, impostor, "c2", "payroll")
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if answer.Type != tunnel.TypeRefusal || !strings.Contains(answer.Refusal.Reason, "certificate") {
		t.Fatalf("answer = %+v, want a refusal naming the certificate", answer)
	}
	after := e.Tunnels()
	if len(after) != len(before) {
		t.Fatalf("the edge holds %d tunnels after the impostor's hello, want the %d it had",
			len(after), len(before))
	}
	for i, ti := range after {
		if want := before[i].Instance; ti.Instance != want {
			t.Errorf("tunnel %d is now instance %q, want the real c2's %q", i, ti.Instance, want)
		}
	}

	client := httpClient(t, v.agentTLS("alice"))
	for i := range 5 {
		if r := oneEcho(t, ctx, client, mcpURL(e, "payroll"), i); !r.ok() {
			t.Fatalf("call %d to the real c2 after the impostor's hello: %+v", i, r)
		}
	}
	if n := up.rec.requests.Load(); n != 5 {
		t.Errorf("the real c2's upstream saw %d requests, want 5", n)
	}
}

// TestRevokedCertificateRefused: nothing an agent sends after its
// certificate was revoked reaches the upstream. On the connection it
// already has, each request is refused with the reason; a new connection
// fails its handshake; a revoked connector cannot say hello.
func TestRevokedCertificateRefused(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	ctx := testContext(t)
	aliceTLS := v.agentTLS("alice")
	alice := httpClient(t, aliceTLS)
	connTLS := v.clientTLS(v.issue(certs.KindConnector, "c1"))
	connTLS.NextProtos = []string{tunnel.ALPN}
	if r := oneEcho(t, ctx, alice, mcpURL(e, "demo"), 1); !r.ok() {
		t.Fatalf("call before the revocation: %+v", r)
	}
	revoke := edge.RevokeRequest{Target: "agent/alice", Reason: "laptop stolen"}
	if _, err := e.Revoke(revoke); err != nil {
		t.Fatalf("Revoke(agent/alice) = %v", err)
	}

	t.Run("open connection", func(t *testing.T) {
		resp, body, err := rpc(t, ctx, alice, mcpURL(e, "demo"), echoCall(2, "after"), nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := checkRPCError(t, resp, body, http.StatusUnauthorized, airmcp.CodeUnauthenticated)
		if !strings.Contains(msg, "revoked") || !strings.Contains(msg, "laptop stolen") {
			t.Errorf("message %q, want it to say revoked: laptop stolen", msg)
		}
	})
	t.Run("new connection", func(t *testing.T) {
		checkTLSAlert(t, "a new connection with a revoked certificate", tlsRefusal(t, e, aliceTLS),
			"bad certificate")
	})
	t.Run("connector", func(t *testing.T) {
		if _, err := e.Revoke(edge.RevokeRequest{Target: "connector/c1"}); err != nil {
			t.Fatalf("Revoke(connector/c1) = %v", err)
		}
		waitFor(t, "the revoked connector's tunnels to close", func() bool {
			return len(e.Tunnels()) == 0
		})
		_, err := sayHello(ctx, e, connTLS, "c1", "demo")
		checkTLSAlert(t, "the hello of a revoked connector", err, "bad certificate")
	})
	if n := upstreamSaw(up, "alice"); n != 1 {
		t.Errorf("the upstream saw %d requests of alice, want only the one before the revocation", n)
	}
}

// TestExpiredCertificateRefused: once an agent's certificate has expired,
// nothing it sends reaches the upstream, on the connection it opened
// before or on a new one; a connector with an expired certificate cannot
// say hello.
func TestExpiredCertificateRefused(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	ctx := testContext(t)
	short := func(kind certs.Kind, name string) (*tls.Config, time.Time) {
		req := certs.SignRequest{Kind: kind, Name: name, Lifetime: time.Minute}
		cred, err := v.ca.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{
			RootCAs:      v.ca.Pool(),
			Certificates: []tls.Certificate{cred.TLSCertificate()},
			MinVersion:   tls.VersionTLS13,
		}
		return tc, cred.Leaf().NotAfter
	}
	aliceTLS, notAfter := short(certs.KindAgent, "alice")
	connTLS, _ := short(certs.KindConnector, "c1")
	connTLS.NextProtos = []string{tunnel.ALPN}
	alice := httpClient(t, aliceTLS)
	if r := oneEcho(t, ctx, alice, mcpURL(e, "demo"), 1); !r.ok() {
		t.Fatalf("call before the certificate expired: %+v", r)
	}
	// The edge's clock, which its TLS handshakes read too, moves past the
	// certificates' end; the agent's (real) clock still trusts the edge's
	// serving certificate.
	edge.SetClock(e, func() time.Time { return notAfter.Add(time.Second) })

	t.Run("open connection", func(t *testing.T) {
		resp, body, err := rpc(t, ctx, alice, mcpURL(e, "demo"), echoCall(2, "after"), nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := checkRPCError(t, resp, body, http.StatusUnauthorized, airmcp.CodeUnauthenticated)
		if !strings.Contains(msg, "expired") {
			t.Errorf("message %q, want it to say the certificate expired", msg)
		}
	})
	t.Run("new connection", func(t *testing.T) {
		checkTLSAlert(t, "a new connection with an expired certificate", tlsRefusal(t, e, aliceTLS),
			"expired certificate")
	})
	t.Run("connector", func(t *testing.T) {
		_, err := sayHello(ctx, e, connTLS, "c1", "demo")
		checkTLSAlert(t, "the hello of a connector with an expired certificate", err, "expired certificate")
	})
	if n := upstreamSaw(up, "alice"); n != 1 {
		t.Errorf("the upstream saw %d requests of alice, want only the one before expiry", n)
	}
}

// tlsRefusal connects to the edge's front door with tc and returns how the
// edge's TLS stack refused it. In TLS 1.3 the client's side of the
// handshake ends before the server has checked the client's certificate,
// so the refusal is an alert that arrives on the first read.
func tlsRefusal(t *testing.T, e *edge.Edge, tc *tls.Config) error {
	t.Helper()
	u, err := url.Parse(mcpURL(e, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// checkTLSAlert fails t unless err is the edge's TLS alert (a nil err,
// an answer, fails too).
func checkTLSAlert(t *testing.T, what string, err error, alert string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "tls: "+alert) {
		t.Errorf("%s: %v, want the TLS alert %q", what, err, alert)
	}
}

// sayHello opens a tunnel connection with tc, sends a hello and returns
// the edge's answer.
func sayHello(ctx context.Context, e *edge.Edge, tc *tls.Config, name string, resources ...string) (*tunnel.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tc = tc.Clone()
	tc.ServerName = "127.0.0.1"
	conn, err := quic.DialAddr(ctx, e.TunnelAddr().String(), tc, tunnel.QUICSettings{}.WithDefaults(16).Config())
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	hello := &tunnel.Hello{Version: tunnel.Version, Name: name, Instance: "test-instance", Resources: resources, Software: "test"}
	if err := tunnel.WriteFrame(str, &tunnel.Message{Type: tunnel.TypeHello, Hello: hello}); err != nil {
		return nil, err
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	var answer tunnel.Message
	if err := tunnel.ReadFrame(str, &answer); err != nil {
		return nil, err
	}
	if answer.Type == tunnel.TypeRefusal && answer.Refusal == nil {
		return nil, errors.New("refusal without a body")
	}
	return &answer, nil
}

// metricValue scrapes the edge's metrics and sums every sample of name.
func metricValue(t *testing.T, e *edge.Edge, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.OpsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// TestMalformedBodiesRefused sends every kind of body the strict parser
// refuses through a real edge; a recording upstream proves none of them
// reached it.
func TestMalformedBodiesRefused(t *testing.T) {
	v, e, up := demoEnv(t, true, func(c *edge.Config) { c.MaxBodyBytes = 4096 }, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	deep := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":` +
		strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`
	const (
		invalid = airmcp.CodeInvalidRequest
		parse   = airmcp.CodeParseError
		params  = airmcp.CodeInvalidParams
	)
	tests := []struct {
		name   string
		body   string
		status int
		code   int
		want   string
	}{
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}]`, 400, invalid, "batches are not accepted"},
		{"duplicate key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"read_file"}}`, 400, invalid, "appears twice"},
		{"case-variant key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"read_file"},"params":{"name":"echo"}}`, 400, invalid, "appears twice"},
		{"case variant of a schema key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"echo"}}`, 400, invalid, "only in case"},
		{"trailing data", `{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"ping"}`, 400, parse, "after the JSON-RPC message"},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\xff\"}}", 400, parse, "UTF-8"},
		{"too deep", deep, 400, invalid, "deeper than 64"},
		{"oversize", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 5000) + `"}}}`, 413, airmcp.CodeBodyTooLarge, "limit"},
		{"params of the wrong type", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}`, 400, params, "must be an object"},
		{"request as a notification", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}`, 400, invalid, "needs an id"},
		{"wrong jsonrpc", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, invalid, `"2.0"`},
		{"not JSON", `{"jsonrpc":"2.0",`, 400, parse, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), tt.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg := checkRPCError(t, resp, body, tt.status, tt.code)
			if !strings.Contains(msg, tt.want) {
				t.Errorf("message %q, want it to name %q", msg, tt.want)
			}
		})
	}
	if n := up.rec.requests.Load(); n != 0 {
		t.Errorf("%d malformed requests reached the upstream", n)
	}
}
