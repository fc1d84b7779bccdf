package edge_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
)

// joinToken makes a join token on e and fails the test if it cannot.
func joinToken(t *testing.T, e *edge.Edge, kind certs.Kind, name string, ttl time.Duration) string {
	t.Helper()
	info, err := e.CreateJoinToken(edge.TokenRequest{Kind: string(kind), Name: name, TTL: ttl})
	if err != nil {
		t.Fatalf("CreateJoinToken(%s, %s) = %v", kind, name, err)
	}
	return info.Token
}

func edgeURL(e *edge.Edge) string { return "https://" + e.Addr().String() }

// enrollHolder enrolls kind/name with a fresh join token into a folder
// of its own.
func (v *env) enrollHolder(e *edge.Edge, kind certs.Kind, name string) *enroll.Holder {
	v.t.Helper()
	h, err := enroll.Enroll(testContext(v.t), enroll.Options{
		EdgeURL: edgeURL(e),
		Token:   joinToken(v.t, e, kind, name, 0),
		Kind:    kind,
		Name:    name,
		Dir:     filepath.Join(v.dir, "holders", string(kind), name),
	})
	if err != nil {
		v.t.Fatalf("enrolling %s %s: %v", kind, name, err)
	}
	return h
}

// startEnrolledConnector enrolls a connector with a join token and runs
// it from its data folder, renewing itself.
func (v *env) startEnrolledConnector(e *edge.Edge, name string, res []connector.Resource) *runningConnector {
	v.t.Helper()
	cfg := connector.Config{
		Name:       name,
		Edges:      []string{e.TunnelAddr().String()},
		DataDir:    filepath.Join(v.dir, "connectors", name),
		EnrollURL:  edgeURL(e),
		Resources:  res,
		DrainGrace: 5 * time.Second,
	}.WithDefaults()
	if err := connector.Enroll(testContext(v.t), cfg, joinToken(v.t, e, certs.KindConnector, name, 0), nil); err != nil {
		v.t.Fatalf("enrolling connector %s: %v", name, err)
	}
	rc := v.runConnector(cfg)
	waitFor(v.t, "enrolled connector to connect", func() bool { return rc.c.Connected() == cfg.Connections })
	return rc
}

func demoEdge(v *env, mod func(*edge.Config)) (*edge.Edge, []connector.Resource) {
	e, res, _ := demoEdgeUpstream(v, mod)
	return e, res
}

// demoEdgeUpstream is demoEdge that also returns the upstream.
func demoEdgeUpstream(v *env, mod func(*edge.Config)) (*edge.Edge, []connector.Resource, *upstream) {
	up := v.startUpstream(true)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, mod)
	return e, []connector.Resource{{Name: "demo", URL: up.url}}, up
}

// postEnroll sends a raw enrollment request and returns the refusal.
func postEnroll(t *testing.T, v *env, e *edge.Edge, req enroll.Request) (int, enroll.ErrorResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	client := httpClient(t, &tls.Config{RootCAs: v.ca.Pool(), MinVersion: tls.VersionTLS13})
	resp, err := client.Post(edgeURL(e)+enroll.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", enroll.PathEnroll, err)
	}
	defer resp.Body.Close()
	var out enroll.ErrorResponse
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func csrPEM(t *testing.T, tmpl *x509.CertificateRequest, key any) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestEnrollmentRefusals(t *testing.T) {
	v := newEnv(t)
	e, _ := demoEdge(v, nil)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weakKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	goodCSR := csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}}, ecKey)

	tests := []struct {
		name       string
		req        func() enroll.Request
		wantStatus int
		wantCode   string
		wantDesc   string
	}{
		{"malformed token", func() enroll.Request { return enroll.Request{Token: "nope", CSR: goodCSR} },
			401, enroll.CodeInvalidToken, "malformed join token"},
		{"unknown token", func() enroll.Request {
			tok, _ := enroll.ParseJoinToken(joinToken(t, e, certs.KindAgent, "alice", 0))
			tok.ID = "ffffffffffffffff"
			return enroll.Request{Token: tok.String(), CSR: goodCSR}
		}, 401, enroll.CodeInvalidToken, "unknown or its secret is wrong"},
		{"wrong secret", func() enroll.Request {
			tok, _ := enroll.ParseJoinToken(joinToken(t, e, certs.KindAgent, "alice", 0))
			tok.Secret = "AAAA" + tok.Secret[4:]
			return enroll.Request{Token: tok.String(), CSR: goodCSR}
		}, 401, enroll.CodeInvalidToken, "unknown or its secret is wrong"},
		{"other kind", func() enroll.Request {
			return enroll.Request{Token: joinToken(t, e, certs.KindConnector, "alice", 0), Kind: "agent", CSR: goodCSR}
		}, 403, enroll.CodeInvalidToken, "is for kind connector, not agent"},
		{"other name", func() enroll.Request {
			return enroll.Request{Token: joinToken(t, e, certs.KindAgent, "alice", 0), Kind: "agent", Name: "bob", CSR: goodCSR}
		}, 403, enroll.CodeInvalidToken, `is for agent "alice", not "bob"`},
		{"csr asks for other names", func() enroll.Request {
			csr := csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}, DNSNames: []string{"edge.example.com"}}, ecKey)
			return enroll.Request{Token: joinToken(t, e, certs.KindAgent, "alice", 0), CSR: csr}
		}, 403, enroll.CodeInvalidCSR, "DNS:edge.example.com"},
		{"csr for another common name", func() enroll.Request {
			csr := csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root"}}, ecKey)
			return enroll.Request{Token: joinToken(t, e, certs.KindAgent, "alice", 0), CSR: csr}
		}, 403, enroll.CodeInvalidCSR, "CN=root"},
		{"weak key", func() enroll.Request {
			csr := csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}}, weakKey)
			return enroll.Request{Token: joinToken(t, e, certs.KindAgent, "alice", 0), CSR: csr}
		}, 400, enroll.CodeInvalidCSR, "RSA key of 1024 bits is too weak"},
		{"not a csr", func() enroll.Request {
			return enroll.Request{Token: joinToken(t, e, certs.KindAgent, "alice", 0), CSR: "hello"}
		}, 400, enroll.CodeInvalidCSR, "not a PEM CERTIFICATE REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := postEnroll(t, v, e, tt.req())
			if status != tt.wantStatus || got.Error != tt.wantCode || !strings.Contains(got.Description, tt.wantDesc) {
				t.Errorf("enroll = %d %s %q, want %d %s containing %q",
					status, got.Error, got.Description, tt.wantStatus, tt.wantCode, tt.wantDesc)
			}
			if got.RequestID == "" {
				t.Error("refusal carries no request_id")
			}
		})
	}
}

func TestExpiredJoinTokenRefused(t *testing.T) {
	v := newEnv(t)
	e, _ := demoEdge(v, nil)
	tok := joinToken(t, e, certs.KindAgent, "alice", time.Minute)
	edge.SetClock(e, func() time.Time { return time.Now().Add(time.Minute + time.Second) })
	_, err := enroll.Enroll(testContext(t), enroll.Options{EdgeURL: edgeURL(e), Token: tok, Kind: certs.KindAgent, Dir: t.TempDir()})
	var refused *enroll.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Description, "has expired") {
		t.Fatalf("Enroll with an expired token = %v, want a refusal saying it has expired", err)
	}
	// Inside its lifetime the same token still works: the refusal did not use it up.
	edge.SetClock(e, time.Now)
	if _, err := enroll.Enroll(testContext(t), enroll.Options{EdgeURL: edgeURL(e), Token: tok, Kind: certs.KindAgent, Dir: t.TempDir()}); err != nil {
		t.Fatalf("Enroll inside the token's lifetime = %v", err)
	}
}

func TestRefusedEnrollmentKeepsToken(t *testing.T) {
	v := newEnv(t)
	e, _ := demoEdge(v, nil)
	tok := joinToken(t, e, certs.KindConnector, "c1", 0)
	_, err := enroll.Enroll(testContext(t), enroll.Options{EdgeURL: edgeURL(e), Token: tok, Kind: certs.KindAgent, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "is for kind connector, not agent") {
		t.Fatalf("Enroll as an agent with a connector token = %v", err)
	}
	h, err := enroll.Enroll(testContext(t), enroll.Options{EdgeURL: edgeURL(e), Token: tok, Kind: certs.KindConnector, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("Enroll as the token's kind after a refusal = %v", err)
	}
	if got := h.Identity().String(); got != "spiffe://airlock.local/connector/c1" {
		t.Errorf("identity = %s", got)
	}
}

func TestJoinTokenWorksOnceAcrossRestart(t *testing.T) {
	v := newEnv(t)
	res := []edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}
	e := v.startEdge(res, nil)
	used := joinToken(t, e, certs.KindAgent, "alice", 0)
	unused := joinToken(t, e, certs.KindAgent, "bob", 0)
	opts := func(tok string) enroll.Options {
		return enroll.Options{EdgeURL: edgeURL(e), Token: tok, Kind: certs.KindAgent, Dir: t.TempDir()}
	}
	if _, err := enroll.Enroll(testContext(t), opts(used)); err != nil {
		t.Fatalf("first use = %v", err)
	}
	if _, err := enroll.Enroll(testContext(t), opts(used)); err == nil || !strings.Contains(err.Error(), "already been used") {
		t.Fatalf("second use = %v, want already used", err)
	}

	shutdownEdge(t, e)
	e = v.startEdge(res, nil)
	if _, err := enroll.Enroll(testContext(t), opts(used)); err == nil || !strings.Contains(err.Error(), "already been used") {
		t.Fatalf("use after restart = %v, want already used", err)
	}
	if _, err := enroll.Enroll(testContext(t), opts(unused)); err != nil {
		t.Fatalf("unused token after restart = %v", err)
	}
}

func TestEnrollmentWrongPinRefused(t *testing.T) {
	v := newEnv(t)
	e, _ := demoEdge(v, nil)
	tok, _ := enroll.ParseJoinToken(joinToken(t, e, certs.KindAgent, "alice", 0))
	other, err := certs.Init(filepath.Join(t.TempDir(), "ca"), certs.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	tok.Pin = enroll.Pin(other.Root().Raw)
	_, err = enroll.Enroll(testContext(t), enroll.Options{EdgeURL: edgeURL(e), Token: tok.String(), Kind: certs.KindAgent, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "does not match the join token's pin") {
		t.Fatalf("Enroll with another CA's pin = %v", err)
	}
}

// traffic calls the demo echo tool through the edge with the holder's
// client until stop, counting calls and failures.
type traffic struct {
	calls, failures atomic.Int64
	// mu guards firstErr.
	mu       sync.Mutex
	firstErr error
	stop     chan struct{}
	done     sync.WaitGroup
}

func startTraffic(t *testing.T, client func() *http.Client, url string, workers int) *traffic {
	t.Helper()
	tr := &traffic{stop: make(chan struct{})}
	for w := range workers {
		tr.done.Go(func() {
			// Bounded: at most 100000 calls, and the test's deadline.
			for i := 0; i < 100000; i++ {
				select {
				case <-tr.stop:
					return
				default:
				}
				tr.call(t, client(), url, w*100000+i)
			}
		})
	}
	return tr
}

func (tr *traffic) call(t *testing.T, client *http.Client, url string, id int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text := fmt.Sprintf("call-%d", id)
	resp, body, err := rpc(t, ctx, client, url, echoCall(id, text), nil)
	tr.calls.Add(1)
	if err == nil && (resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(text))) {
		err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if err != nil {
		tr.failures.Add(1)
		tr.mu.Lock()
		if tr.firstErr == nil {
			tr.firstErr = err
		}
		tr.mu.Unlock()
	}
}

func (tr *traffic) finish(t *testing.T) {
	t.Helper()
	close(tr.stop)
	tr.done.Wait()
	if n := tr.failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, tr.calls.Load(), tr.firstErr)
	}
	if tr.calls.Load() == 0 {
		t.Error("no call was made")
	}
}

// serials records the distinct serials a holder has had.
func watchSerials(h *enroll.Holder) func() int {
	var mu sync.Mutex
	seen := map[string]bool{h.Credential().Leaf().SerialNumber.String(): true}
	h.OnChange(func() {
		mu.Lock()
		seen[h.Credential().Leaf().SerialNumber.String()] = true
		mu.Unlock()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

func TestRenewalsUnderTraffic(t *testing.T) {
	v := newEnv(t)
	e, res := demoEdge(v, func(c *edge.Config) {
		c.AgentCertLifetime = 4 * time.Second
		c.ConnectorCertLifetime = 4 * time.Second
	})
	rc := v.startEnrolledConnector(e, "c1", res)
	agent := v.enrollHolder(e, certs.KindAgent, "alice")
	agentSerials := watchSerials(agent)
	ctx, cancel := context.WithCancel(testContext(t))
	renewed := make(chan error, 1)
	go func() { renewed <- (&enroll.Renewer{Holder: agent, Logger: testLogger(t)}).Run(ctx) }()

	client := holderClient(agent)
	tr := startTraffic(t, func() *http.Client { return client }, mcpURL(e, "demo"), 4)
	// Three renewals of each, one every 2.7 seconds or so; the first
	// certificates would have expired twice over without them.
	waitFor(t, "three agent renewals", func() bool { return agentSerials() >= 4 })
	waitFor(t, "three connector renewals", func() bool { return rc.c.Renewals() >= 3 })
	tr.finish(t)
	cancel()
	if err := <-renewed; err != nil {
		t.Errorf("agent Renewer.Run = %v", err)
	}
	if got := rc.c.Connected(); got < 2 {
		t.Errorf("connector has %d tunnels after renewals, want 2", got)
	}
}

// startLongCall starts a 60-second tools/call through the edge and
// returns a channel that reports how it ended.
func startLongCall(t *testing.T, client *http.Client, url string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// Stateless 2026-07-28, where the POST is the whole call: ending
		// it must cancel the tool upstream.
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wait","arguments":{"seconds":60},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
			`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}}}}`
		hdr := http.Header{
			"Mcp-Protocol-Version": {"2026-07-28"},
			"Mcp-Method":           {"tools/call"},
			"Mcp-Name":             {"wait"},
		}
		resp, data, err := rpc(t, testContext(t), client, url, body, hdr)
		if err == nil {
			err = fmt.Errorf("long call ended with status %d: %s", resp.StatusCode, data)
		}
		done <- err
	}()
	return done
}

// ended waits at most five seconds for a stream to end, and checks that
// the agent was told why.
func ended(t *testing.T, what string, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		if !strings.Contains(fmt.Sprint(err), why) {
			t.Errorf("%s ended with %v, want it to say %q", what, err, why)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still open 5 seconds after the revocation", what)
	}
}

func TestRevocationUnderTraffic(t *testing.T) {
	v := newEnv(t)
	res := []edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}
	up := v.startUpstream(true)
	e := v.startEdge(res, nil)
	crs := []connector.Resource{{Name: "demo", URL: up.url}}
	rc := v.startEnrolledConnector(e, "c1", crs)
	alice := v.enrollHolder(e, certs.KindAgent, "alice")
	bob := v.enrollHolder(e, certs.KindAgent, "bob")
	url := mcpURL(e, "demo")

	aliceClient := holderClient(alice)
	if resp, _, err := rpc(t, testContext(t), aliceClient, url, echoCall(1, "before"), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("call before revocation = %v %v", resp, err)
	}
	long := startLongCall(t, aliceClient, url)
	waitFor(t, "the long call to reach the upstream", func() bool { return up.rec.requests.Load() >= 2 })
	bobClient := holderClient(bob)
	bobTraffic := startTraffic(t, func() *http.Client { return bobClient }, url, 2)

	got, err := e.Revoke(edge.RevokeRequest{Target: alice.Identity().String(), Reason: "laptop stolen"})
	if err != nil {
		t.Fatalf("Revoke = %v", err)
	}
	if got.ClosedRequests != 1 {
		t.Errorf("Revoke closed %d requests, want the one long call", got.ClosedRequests)
	}
	ended(t, "alice's long call", long, "certificate revoked")
	if err := up.stats.AwaitCancelled(testContext(t), 1); err != nil {
		t.Errorf("the revoked agent's call was never cancelled upstream: %v", err)
	}

	// On the connection alice already has: refused per request, with why.
	resp, body, err := rpc(t, testContext(t), aliceClient, url, echoCall(2, "after"), nil)
	if err == nil && (resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("revoked")) || !bytes.Contains(body, []byte("laptop stolen"))) {
		t.Errorf("request after revocation = %d %s, want 401 saying revoked: laptop stolen", resp.StatusCode, body)
	}
	// A new connection: refused at the handshake.
	if _, _, err := rpc(t, testContext(t), holderClient(alice), url, echoCall(3, "new"), nil); err == nil {
		t.Error("a new connection with the revoked certificate was accepted")
	}
	// Renewal too: the handshake already refuses the certificate.
	serial := alice.Credential().Leaf().SerialNumber
	if err := alice.Renew(testContext(t)); err == nil || alice.Credential().Leaf().SerialNumber.Cmp(serial) != 0 {
		t.Errorf("Renew after revocation = %v, want a refusal and the old certificate kept", err)
	}
	bobTraffic.finish(t)

	// Revoking the connector closes its tunnels at once, and it cannot
	// come back.
	if got, err := e.Revoke(edge.RevokeRequest{Target: "connector/c1"}); err != nil || got.ClosedTunnels != 2 {
		t.Fatalf("Revoke(connector/c1) = %+v, %v, want 2 tunnels closed", got, err)
	}
	waitFor(t, "the connector's tunnels to close", func() bool { return len(e.Tunnels()) == 0 })

	// Still refused after a restart.
	rc.kill()
	addr := e.Addr().String()
	shutdownEdge(t, e)
	e = v.startEdge(res, func(c *edge.Config) { c.Listen = addr })
	if _, _, err := rpc(t, testContext(t), holderClient(alice), mcpURL(e, "demo"), echoCall(4, "restart"), nil); err == nil {
		t.Error("the revoked agent was accepted after an edge restart")
	}
	// The handshake refuses it; what the client reports of that depends on
	// which HTTP version it was trying, so only the outcome is checked.
	if err := alice.Renew(testContext(t)); err == nil || alice.Credential().Leaf().SerialNumber.Cmp(serial) != 0 {
		t.Errorf("Renew after restart = %v, want a refusal and the old certificate kept", err)
	}
	rc2 := v.runConnector(connector.Config{
		Name: "c1", Edges: []string{e.TunnelAddr().String()}, DataDir: filepath.Join(v.dir, "connectors", "c1"),
		EnrollURL: edgeURL(e), Resources: crs,
	}.WithDefaults())
	time.Sleep(300 * time.Millisecond) // a few redial attempts
	if n := rc2.c.Connected(); n != 0 || len(e.Tunnels()) != 0 {
		t.Errorf("revoked connector has %d tunnels after the restart, want 0", n)
	}
	// The name can be enrolled again, with a new join token and key.
	if h := v.enrollHolder(e, certs.KindAgent, "alice"); h.Credential().Leaf().SerialNumber.Cmp(alice.Credential().Leaf().SerialNumber) == 0 {
		t.Error("re-enrollment returned the revoked certificate")
	}
}
