package edge_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/assertion"
	"github.com/airlockhq/airlock/examples/demoserver"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

// plainClient presents the certificate of tc and adds no token.
func plainClient(t *testing.T, tc *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// leafOf returns the certificate a client TLS config presents.
func leafOf(t *testing.T, tc *tls.Config) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// claimsFor are the claims of a valid access token for the demo resource
// bound to leaf.
func claimsFor(e *edge.Edge, leaf *x509.Certificate, agent string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   e.Issuer(),
		"sub":   "spiffe://airlock.local/agent/" + agent,
		"aud":   e.Issuer() + "/mcp/demo",
		"iat":   now.Unix(),
		"exp":   now.Add(5 * time.Minute).Unix(),
		"jti":   "t-1",
		"scope": "mcp:demo",
		"cnf":   map[string]any{"x5t#S256": token.Thumbprint(leaf)},
	}
}

// mint signs claims with the edge's signing key after edit changes the
// header.
func mint(t *testing.T, e *edge.Edge, claims jwt.MapClaims, edit func(map[string]any)) string {
	t.Helper()
	k := e.Keys().Signing()
	method := jwt.GetSigningMethod(k.Alg)
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"], tok.Header["typ"] = k.ID, token.TypAccess
	if edit != nil {
		edit(tok.Header)
	}
	s, err := tok.SignedString(k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestAccessTokenRefusals(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	ctx := testContext(t)
	aliceTLS := v.agentTLS("alice")
	alice := plainClient(t, aliceTLS)
	leaf := leafOf(t, aliceTLS)
	url := mcpURL(e, "demo")
	now := time.Now()
	pub, _ := x509.MarshalPKIXPublicKey(e.Keys().Signing().Public)

	with := func(k string, val any) string {
		c := claimsFor(e, leaf, "alice")
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return mint(t, e, c, nil)
	}
	header := func(k string, val any) string {
		return mint(t, e, claimsFor(e, leaf, "alice"), func(h map[string]any) { h[k] = val })
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor(e, leaf, "alice")).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsFor(e, leaf, "alice"))
	hs.Header["kid"], hs.Header["typ"] = e.Keys().Signing().ID, token.TypAccess
	hsToken, _ := hs.SignedString(pub)
	bobToken := mint(t, e, claimsFor(e, leafOf(t, v.agentTLS("bob")), "bob"), nil)
	noKid := mint(t, e, claimsFor(e, leaf, "alice"), func(h map[string]any) { delete(h, "kid") })
	// A good token whose payload is swapped for a wider one after signing.
	parts := strings.Split(mint(t, e, claimsFor(e, leaf, "alice"), nil), ".")
	wider := claimsFor(e, leaf, "alice")
	wider["scope"] = "mcp:demo mcp:payroll"
	payload, _ := json.Marshal(wider)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	tampered := strings.Join(parts, ".")

	tests := []struct {
		name string
		tok  string
	}{
		{"alg none", none},
		{"HS256 signed with the public key", hsToken},
		{"unknown kid", header("kid", "0000000000000000")},
		{"no kid", noKid},
		{"jku header", header("jku", "https://evil.example/jwks.json")},
		{"x5u header", header("x5u", "https://evil.example/cert.pem")},
		{"embedded jwk", header("jwk", map[string]any{"kty": "EC", "crv": "P-256"})},
		{"x5c header", header("x5c", []string{"MIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnVudXNlZDAeFw0="})},
		{"crit header", header("crit", []string{"exp"})},
		{"typ of an identity assertion", header("typ", token.TypAssertion)},
		{"tampered payload", tampered},
		// Well beyond the 30 s leeway, so that the time the test itself
		// takes cannot carry them back inside it.
		{"expired beyond the leeway", with("exp", now.Add(-45*time.Second).Unix())},
		{"not yet valid beyond the leeway", with("nbf", now.Add(45*time.Second).Unix())},
		{"issued in the future beyond the leeway", with("iat", now.Add(2*time.Minute).Unix())},
		{"wrong aud", with("aud", e.Issuer()+"/mcp/other")},
		{"missing aud", with("aud", nil)},
		{"wrong iss", with("iss", "https://evil.example")},
		{"missing exp", with("exp", nil)},
		{"missing sub", with("sub", nil)},
		{"missing jti", with("jti", nil)},
		{"missing iat", with("iat", nil)},
		{"missing scope", with("scope", nil)},
		{"unreadable scope", with("scope", "admin")},
		{"missing cnf", with("cnf", nil)},
		{"lifetime over the maximum", with("exp", now.Add(16*time.Minute).Unix())},
		{"over 8 KiB", with("pad", strings.Repeat("x", 9000))},
		{"another agent's token", bobToken},
		// Bound to alice's certificate, but naming bob.
		{"sub of another agent", with("sub", "spiffe://airlock.local/agent/bob")},
		{"garbage", "not.a.jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := rpc(t, ctx, alice, url, echoCall(1, "x"), bearer(tt.tok))
			if err != nil {
				t.Fatal(err)
			}
			checkRPCError(t, resp, body, http.StatusUnauthorized, airmcp.CodeUnauthenticated)
			challenge := resp.Header.Get("WWW-Authenticate")
			if !strings.Contains(challenge, `error="invalid_token"`) ||
				!strings.Contains(challenge, `resource_metadata="`+e.Issuer()+`/.well-known/oauth-protected-resource/mcp/demo"`) {
				t.Errorf("WWW-Authenticate = %q", challenge)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		resp, body, _ := rpc(t, ctx, alice, url, echoCall(1, "x"), nil)
		checkRPCError(t, resp, body, http.StatusUnauthorized, airmcp.CodeUnauthenticated)
		if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer resource_metadata=") {
			t.Errorf("WWW-Authenticate = %q, want a bare challenge with the metadata URL", c)
		}
	})
	t.Run("a cached token with another certificate", func(t *testing.T) {
		good := mint(t, e, claimsFor(e, leaf, "alice"), nil)
		if resp, body, _ := rpc(t, ctx, alice, url, echoCall(1, "cache me"), bearer(good)); resp.StatusCode != 200 {
			t.Fatalf("first use: %s", body)
		}
		before := up.rec.requests.Load()
		bob := plainClient(t, v.agentTLS("bob"))
		resp, body, _ := rpc(t, ctx, bob, url, echoCall(2, "stolen"), bearer(good))
		checkRPCError(t, resp, body, http.StatusUnauthorized, airmcp.CodeUnauthenticated)
		if up.rec.requests.Load() != before {
			t.Error("a stolen token reached the upstream")
		}
	})
	t.Run("GET with a body", func(t *testing.T) {
		good := mint(t, e, claimsFor(e, leaf, "alice"), nil)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, strings.NewReader(echoCall(1, "hidden")))
		req.Header = bearer(good)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkRPCError(t, resp, body, http.StatusBadRequest, airmcp.CodeInvalidRequest)
	})
	t.Run("token in the query string", func(t *testing.T) {
		good := mint(t, e, claimsFor(e, leaf, "alice"), nil)
		resp, body, _ := rpc(t, ctx, alice, url+"?access_token="+good, echoCall(1, "x"), nil)
		checkRPCError(t, resp, body, http.StatusBadRequest, airmcp.CodeInvalidRequest)
	})
	if n := up.rec.requests.Load(); n != 1 { // the cached token's first use
		t.Fatalf("%d requests reached the upstream, want only the one allowed", n)
	}

	// Inside the leeway, and a well-formed token: accepted.
	for name, tok := range map[string]string{
		"expired 20 s ago": mint(t, e, func() jwt.MapClaims {
			c := claimsFor(e, leaf, "alice")
			c["exp"], c["iat"] = now.Add(-20*time.Second).Unix(), now.Add(-5*time.Minute).Unix()
			return c
		}(), nil),
		"valid in 20 s": with("nbf", now.Add(20*time.Second).Unix()),
		"good":          mint(t, e, claimsFor(e, leaf, "alice"), nil),
	} {
		resp, body, err := rpc(t, ctx, alice, url, echoCall(2, name), bearer(tok))
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), name) {
			t.Errorf("%s: %v %s, want accepted", name, err, body)
		}
	}
}

// fetch asks the token endpoint for a token as client.
func fetch(t *testing.T, client *http.Client, e *edge.Edge, req token.Request) (*token.Response, error) {
	t.Helper()
	return token.Fetch(testContext(t), client, e.Issuer()+token.PathToken, req)
}

func TestScopeIsACeiling(t *testing.T) {
	v, e, up := demoEnv(t, true, func(c *edge.Config) { c.OpsListen = "127.0.0.1:0" }, nil)
	ctx := testContext(t)
	alice := plainClient(t, v.agentTLS("alice"))
	url := mcpURL(e, "demo")

	narrow, err := fetch(t, alice, e, token.Request{Resources: []string{url}, Scope: "mcp:demo:tools/call:echo"})
	if err != nil {
		t.Fatalf("token for echo only: %v", err)
	}
	if narrow.Scope != "mcp:demo:tools/call:echo" || narrow.ExpiresIn != 300 || narrow.TokenType != "Bearer" {
		t.Errorf("token response = %+v", narrow)
	}
	if resp, body, err := rpc(t, ctx, alice, url, echoCall(1, "allowed"), bearer(narrow.AccessToken)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("echo with an echo-only token: %v %s", err, body)
	}
	before := up.rec.requests.Load()
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"x"}}}`
	resp, body, err := rpc(t, ctx, alice, url, call, bearer(narrow.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	checkRPCError(t, resp, body, http.StatusForbidden, airmcp.CodeInsufficientScope)
	want := `Bearer error="insufficient_scope", scope="mcp:demo:tools/call:read_file"`
	if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, want) {
		t.Errorf("WWW-Authenticate = %q, want it to start with %q", c, want)
	}
	if !strings.Contains(string(body), "mcp:demo:tools/call:read_file") {
		t.Errorf("the denial does not name the scope needed: %s", body)
	}
	if n := up.rec.requests.Load(); n != before {
		t.Error("a request outside the token's scope reached the upstream")
	}

	resp, err = http.Get("http://" + e.OpsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`airlock_edge_tokens_total{event="insufficient_scope"} 1`,
		`airlock_edge_tokens_total{event="issued_client_credentials"} 1`,
		`airlock_edge_requests_total{code="403",mcp_method="tools/call",method="POST",resource="demo"} 1`,
		`airlock_edge_requests_total{code="200",mcp_method="tools/call",method="POST",resource="demo"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}, {Name: "files", Connectors: []string{"c1"}}}, nil)
	alice := plainClient(t, v.agentTLS("alice"))
	bob := plainClient(t, v.agentTLS("bob"))
	url := mcpURL(e, "demo")
	subject, err := fetch(t, alice, e, token.Request{Resources: []string{url}, Scope: "mcp:demo:tools/call"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		client   *http.Client
		req      token.Request
		wantCode string
	}{
		{"no resource", alice, token.Request{}, "invalid_target"},
		{"unknown resource", alice, token.Request{Resources: []string{e.Issuer() + "/mcp/payroll"}}, "invalid_target"},
		{"another edge's resource", alice, token.Request{Resources: []string{"https://evil.example/mcp/demo"}}, "invalid_target"},
		{"scope of another resource", alice, token.Request{Resources: []string{url}, Scope: "mcp:payroll"}, "invalid_scope"},
		{"malformed scope", alice, token.Request{Resources: []string{url}, Scope: "admin"}, "invalid_scope"},
		{"exchange wider than the subject", alice,
			token.Request{Resources: []string{url}, Scope: "mcp:demo", SubjectToken: subject.AccessToken}, "invalid_scope"},
		{"exchange of another agent's token", bob,
			token.Request{Resources: []string{url}, SubjectToken: subject.AccessToken}, "invalid_request"},
		{"exchange of garbage", alice,
			token.Request{Resources: []string{url}, SubjectToken: "x.y.z"}, "invalid_request"},
		{"exchange for a resource the subject was not for", alice,
			token.Request{Resources: []string{e.Issuer() + "/mcp/files"}, SubjectToken: subject.AccessToken}, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, tt.client, e, tt.req)
			var refused *token.FetchError
			if !errors.As(err, &refused) || refused.ErrorResponse.Error != tt.wantCode {
				t.Errorf("Fetch() = %v, want %s", err, tt.wantCode)
			}
		})
	}

	// Parameters Airlock does not support are refused, never ignored.
	for _, extra := range []string{"actor_token=x&actor_token_type=" + token.TokenTypeAccess, "audience=other",
		"requested_token_type=urn:ietf:params:oauth:token-type:id_token"} {
		resp, err := alice.Post(e.Issuer()+token.PathToken, "application/x-www-form-urlencoded",
			strings.NewReader("grant_type=client_credentials&resource="+url+"&"+extra))
		if err != nil {
			t.Fatal(err)
		}
		var er token.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&er)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || er.Error != "invalid_request" {
			t.Errorf("token request with %s = %d %+v, want 400 invalid_request", extra, resp.StatusCode, er)
		}
	}

	// A connector certificate is no client of the token endpoint.
	conn := plainClient(t, v.clientTLS(v.issue("connector", "c1")))
	_, err = fetch(t, conn, e, token.Request{Resources: []string{url}})
	var refused *token.FetchError
	if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized || refused.ErrorResponse.Error != "invalid_client" {
		t.Errorf("token for a connector certificate = %v, want 401 invalid_client", err)
	}

	// Narrowing works: one tool, shorter life, never past the subject.
	narrow, err := fetch(t, alice, e, token.Request{Resources: []string{url}, Scope: "mcp:demo:tools/call:echo",
		SubjectToken: subject.AccessToken, Lifetime: time.Minute})
	if err != nil || narrow.Scope != "mcp:demo:tools/call:echo" || narrow.ExpiresIn != 60 ||
		narrow.IssuedTokenType != token.TokenTypeAccess {
		t.Errorf("exchange for one tool = %+v, %v", narrow, err)
	}
	short, err := fetch(t, alice, e, token.Request{Resources: []string{url}, Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	longer, err := fetch(t, alice, e, token.Request{Resources: []string{url}, SubjectToken: short.AccessToken})
	if err != nil || longer.ExpiresIn > short.ExpiresIn {
		t.Errorf("exchange of a one-minute token = %+v, %v; want it to expire no later", longer, err)
	}
}

func TestMetadataAndJWKS(t *testing.T) {
	v, e, _ := demoEnv(t, true, nil, nil)
	anon := plainClient(t, &tls.Config{RootCAs: v.ca.Pool()})
	get := func(path string, into any) {
		t.Helper()
		resp, err := anon.Get(e.Issuer() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var as map[string]any
	get("/.well-known/oauth-authorization-server", &as)
	if as["issuer"] != e.Issuer() || as["token_endpoint"] != e.Issuer()+"/oauth/token" ||
		as["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("authorization-server metadata = %v", as)
	}
	var pr map[string]any
	get("/.well-known/oauth-protected-resource/mcp/demo", &pr)
	if pr["resource"] != e.Issuer()+"/mcp/demo" || !strings.Contains(toJSON(pr["authorization_servers"]), e.Issuer()) {
		t.Errorf("protected-resource metadata = %v", pr)
	}
	var raw json.RawMessage
	get("/.well-known/jwks.json", &raw)
	if _, err := token.ParseJWKS(raw); err != nil {
		t.Errorf("JWKS: %v (%s)", err, raw)
	}
	resp, err := anon.Get(e.Issuer() + "/.well-known/oauth-protected-resource/mcp/nope")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("metadata of an unknown resource = %d, want 404", resp.StatusCode)
		}
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestUpstreamSeesAssertionNotToken calls through edge and tunnel with
// the go-sdk client and a token from the token endpoint: the upstream
// gets an identity assertion that verifies against the published JWKS and
// names exactly that request, and never the token.
func TestUpstreamSeesAssertionNotToken(t *testing.T) {
	v, e, up := demoEnv(t, false, nil, nil)
	ctx := testContext(t)
	tc := v.agentTLS("alice")
	base := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(base.CloseIdleConnections)
	sent := &sentTokens{next: token.NewTransport(base, nil)}
	cs := connectMCP(t, &http.Client{Transport: sent}, mcpURL(e, "demo"), nil)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}})
	if err != nil || textOf(t, res) != "hello" {
		t.Fatalf("echo = %v, %v", res, err)
	}

	resp, err := base.RoundTrip(mustGet(t, e.Issuer()+token.PathJWKS))
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keys, err := token.ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	verifier := &token.Verifier{Keys: keys, Issuer: e.Issuer(), MaxLifetime: token.AssertionLifetime}
	var sawCall bool
	tok := sent.last()
	if tok == "" {
		t.Fatal("the client sent no token")
	}
	for _, h := range up.rec.seen() {
		for k, vs := range h {
			if strings.Contains(strings.Join(vs, " "), tok) {
				t.Errorf("the agent's token reached the upstream in header %s", k)
			}
		}
		if h.Get("Authorization") != "" {
			t.Errorf("the upstream saw an Authorization header")
		}
		claims, err := verifier.VerifyAssertion(h.Get(token.AssertionHeader), "demo")
		if err != nil {
			t.Fatalf("the upstream's assertion does not verify: %v", err)
		}
		if claims.Subject != "spiffe://airlock.local/agent/alice" {
			t.Errorf("assertion sub = %q", claims.Subject)
		}
		if claims.Request.Method == "tools/call" {
			sawCall = claims.Request.Name == "echo" && claims.Request.BodySHA256 != ""
		}
	}
	if !sawCall {
		t.Error("no assertion described the echo tools/call")
	}
}

// sentTokens remembers the last bearer token a client sent.
type sentTokens struct {
	next http.RoundTripper
	mu   sync.Mutex
	tok  string
}

func (s *sentTokens) RoundTrip(req *http.Request) (*http.Response, error) {
	// The token transport adds the header on its own clone; look at what
	// it fetched by asking it through a probe of the request it sends.
	resp, err := s.next.RoundTrip(req)
	if resp != nil && resp.Request != nil {
		if v, ok := strings.CutPrefix(resp.Request.Header.Get("Authorization"), "Bearer "); ok {
			s.mu.Lock()
			s.tok = v
			s.mu.Unlock()
		}
	}
	return resp, err
}

func (s *sentTokens) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

func mustGet(t *testing.T, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestConnectorRefusesBadAssertions makes the edge send what a forged or
// confused edge would; the connector forwards none of it.
func TestConnectorRefusesBadAssertions(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	ctx := testContext(t)
	client := httpClient(t, v.agentTLS("alice"))
	other, err := x509.ParseCertificate(v.ca.Root().Raw) // any foreign bytes
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(*http.Request)
	}{
		{"no assertion", func(r *http.Request) { r.Header.Del(token.AssertionHeader) }},
		{"garbage", func(r *http.Request) { r.Header.Set(token.AssertionHeader, "a.b.c") }},
		{"body changed after signing", func(r *http.Request) {
			body := []byte(echoCall(1, "swapped"))
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(string(body))), int64(len(body))
		}},
		{"another resource's assertion", func(r *http.Request) {
			claims := token.NewAssertion(e.Issuer(), "spiffe://airlock.local/agent/alice", "other",
				token.RequestDigest{HTTPMethod: "POST"}, "", time.Now())
			raw, _ := e.Keys().Sign(token.TypAssertion, claims)
			r.Header.Set(token.AssertionHeader, raw)
		}},
		{"an access token instead", func(r *http.Request) {
			r.Header.Set(token.AssertionHeader, mint(t, e, claimsFor(e, other, "alice"), nil))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edge.TamperTunnel(e, tt.tamper)
			defer edge.TamperTunnel(e, nil)
			before := up.rec.requests.Load()
			resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(1, "x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkRPCError(t, resp, body, http.StatusBadGateway, airmcp.CodeAssertionRefused)
			if up.rec.requests.Load() != before {
				t.Error("the connector forwarded a request with a bad assertion")
			}
		})
	}
	// Untampered, the same call goes through.
	if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), 9); !r.ok() {
		t.Fatalf("untampered call: %+v", r)
	}
}

// TestUpstreamVerifiesAssertion runs the demo server behind the
// examples/assertion middleware, which checks every request against the
// edge's published keys: calls through Airlock pass, a direct call
// without the edge does not.
func TestUpstreamVerifiesAssertion(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	keys := assertion.NewKeys(e.Issuer())
	keys.Client = plainClient(t, &tls.Config{RootCAs: v.ca.Pool()})
	h := assertion.Require(keys, "demo", demoserver.Handler(demoserver.Options{SandboxDir: t.TempDir()}, true))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: srv.URL + "/mcp"}}, nil)
	ctx := testContext(t)

	if r := oneEcho(t, ctx, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), 1); !r.ok() {
		t.Fatalf("call through Airlock to a verifying upstream: %+v", r)
	}
	resp, _, err := rpc(t, ctx, http.DefaultClient, srv.URL+"/mcp", echoCall(2, "direct"), nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("direct call without an assertion = %v %v, want 401", resp, err)
	}
}
