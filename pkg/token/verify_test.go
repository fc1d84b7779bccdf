package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/airlockhq/airlock/pkg/store"
)

const (
	testIssuer   = "https://edge.test:8443"
	testAudience = "https://edge.test:8443/mcp/demo"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openKeys(t *testing.T, c *clock, alg string) *KeySet { return openKeysB(t, c, alg) }

func openKeysB(t testing.TB, c *clock, alg string) *KeySet {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := OpenKeySet(st, alg, 20*time.Minute, c.now)
	if err != nil {
		t.Fatalf("OpenKeySet() = %v", err)
	}
	return ks
}

func testCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// goodClaims are the claims of a valid access token issued at c's time.
func goodClaims(c *clock, cert *x509.Certificate) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   testIssuer,
		"sub":   "spiffe://airlock.local/agent/alice",
		"aud":   testAudience,
		"iat":   c.t.Unix(),
		"exp":   c.t.Add(5 * time.Minute).Unix(),
		"jti":   "j1",
		"scope": "mcp:demo",
		"cnf":   map[string]any{"x5t#S256": Thumbprint(cert)},
	}
}

// sign signs claims with the set's signing key, after edit changes the
// header.
func sign(t *testing.T, ks *KeySet, claims jwt.MapClaims, edit func(h map[string]any)) string {
	t.Helper()
	k := ks.Signing()
	tok := jwt.NewWithClaims(signingMethod(k.Alg), claims)
	tok.Header["kid"] = k.ID
	tok.Header["typ"] = TypAccess
	if edit != nil {
		edit(tok.Header)
	}
	s, err := tok.SignedString(k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyAccessAccepts(t *testing.T) {
	for _, alg := range []string{AlgES256, AlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			c := &clock{time.Unix(1_800_000_000, 0)}
			ks := openKeys(t, c, alg)
			cert := testCert(t, "alice")
			v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
			got, err := v.VerifyAccess(sign(t, ks, goodClaims(c, cert), nil), testAudience, cert)
			if err != nil {
				t.Fatalf("VerifyAccess() = %v", err)
			}
			if got.Subject != "spiffe://airlock.local/agent/alice" || got.Scope != "mcp:demo" {
				t.Errorf("claims = %+v", got)
			}
		})
	}
}

func TestVerifyAccessRefuses(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeys(t, c, AlgES256)
	cert := testCert(t, "alice")
	v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
	pubDER, _ := x509.MarshalPKIXPublicKey(ks.Signing().Public)

	without := func(k string) func(jwt.MapClaims) { return func(m jwt.MapClaims) { delete(m, k) } }
	set := func(k string, val any) func(jwt.MapClaims) { return func(m jwt.MapClaims) { m[k] = val } }
	hdr := func(k string, val any) func(map[string]any) { return func(h map[string]any) { h[k] = val } }
	tests := []struct {
		name   string
		claims func(jwt.MapClaims)
		header func(map[string]any)
		raw    func(good string) string // replaces the token outright
		cert   *x509.Certificate
		want   string
	}{
		{name: "alg none", raw: func(string) string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, goodClaims(c, cert)).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}, want: "signing method none is invalid"},
		{name: "HS256 signed with the public key", raw: func(string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims(c, cert))
			tok.Header["kid"], tok.Header["typ"] = ks.Signing().ID, TypAccess
			s, _ := tok.SignedString(pubDER)
			return s
		}, want: "signing method HS256 is invalid"},
		{name: "EdDSA under an ES256 key", raw: func(string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, goodClaims(c, cert))
			tok.Header["kid"], tok.Header["typ"] = ks.Signing().ID, TypAccess
			_, other, _ := edKey()
			s, _ := tok.SignedString(other)
			return s
		}, want: "signs only with ES256"},
		{name: "unknown kid", header: hdr("kid", "nope"), want: `unknown signing key "nope"`},
		{name: "no kid", header: func(h map[string]any) { delete(h, "kid") }, want: "no kid"},
		{name: "jku header", header: hdr("jku", "https://evil.example/jwks"), want: `header "jku"`},
		{name: "x5u header", header: hdr("x5u", "https://evil.example/cert"), want: `header "x5u"`},
		{name: "embedded jwk", header: hdr("jwk", map[string]any{"kty": "EC"}), want: `header "jwk"`},
		{name: "assertion typ", header: hdr("typ", TypAssertion), want: "typ"},
		{name: "expired beyond leeway", claims: set("exp", c.t.Add(-31*time.Second).Unix()), want: "expired"},
		{name: "not yet valid beyond leeway", claims: set("nbf", c.t.Add(31*time.Second).Unix()), want: "not valid yet"},
		{name: "issued in the future", claims: set("iat", c.t.Add(time.Minute).Unix()), want: "used before issued"},
		{name: "wrong aud", claims: set("aud", "https://edge.test:8443/mcp/other"), want: "audience"},
		{name: "missing aud", claims: without("aud"), want: "aud"},
		{name: "wrong iss", claims: set("iss", "https://evil.example"), want: "issuer"},
		{name: "missing exp", claims: without("exp"), want: "exp"},
		{name: "missing sub", claims: without("sub"), want: "no sub"},
		{name: "missing jti", claims: without("jti"), want: "no jti"},
		{name: "missing iat", claims: without("iat"), want: "no iat"},
		{name: "missing cnf", claims: without("cnf"), want: "no cnf"},
		{name: "missing scope", claims: without("scope"), want: "no scope"},
		{name: "lifetime over the maximum", claims: set("exp", c.t.Add(16*time.Minute).Unix()), want: "over the maximum"},
		{name: "over 8 KiB", claims: set("pad", strings.Repeat("x", 9000)), want: "over the limit"},
		{name: "another agent's certificate", cert: testCert(t, "mallory"), want: "another certificate"},
		{name: "tampered payload", raw: func(good string) string {
			parts := strings.Split(good, ".")
			body, _ := json.Marshal(goodClaimsWith(c, cert, "scope", "mcp:payroll"))
			parts[1] = b64(body)
			return strings.Join(parts, ".")
		}, want: "signature is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := goodClaims(c, cert)
			if tt.claims != nil {
				tt.claims(claims)
			}
			raw := sign(t, ks, claims, tt.header)
			if tt.raw != nil {
				raw = tt.raw(raw)
			}
			presented := cert
			if tt.cert != nil {
				presented = tt.cert
			}
			_, err := v.VerifyAccess(raw, testAudience, presented)
			var inv *InvalidError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyAccess() = %v, want an *InvalidError containing %q", err, tt.want)
			}
		})
	}
}

func goodClaimsWith(c *clock, cert *x509.Certificate, k string, v any) jwt.MapClaims {
	m := goodClaims(c, cert)
	m[k] = v
	return m
}

func TestVerifyAccessLeeway(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeys(t, c, AlgES256)
	cert := testCert(t, "alice")
	v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
	for name, edit := range map[string]func(jwt.MapClaims){
		"expired 29 s ago": func(m jwt.MapClaims) {
			m["exp"] = c.t.Add(-29 * time.Second).Unix()
			m["iat"] = c.t.Add(-5 * time.Minute).Unix()
		},
		"valid in 29 s":        func(m jwt.MapClaims) { m["nbf"] = c.t.Add(29 * time.Second).Unix() },
		"issued 29 s from now": func(m jwt.MapClaims) { m["iat"] = c.t.Add(29 * time.Second).Unix() },
	} {
		claims := goodClaims(c, cert)
		edit(claims)
		if _, err := v.VerifyAccess(sign(t, ks, claims, nil), testAudience, cert); err != nil {
			t.Errorf("%s: VerifyAccess() = %v, want accepted inside the leeway", name, err)
		}
	}
	// A leeway above the maximum is cut to it.
	wide := *v
	wide.Leeway = time.Hour
	claims := goodClaims(c, cert)
	claims["exp"], claims["iat"] = c.t.Add(-time.Minute).Unix(), c.t.Add(-6*time.Minute).Unix()
	if _, err := wide.VerifyAccess(sign(t, ks, claims, nil), testAudience, cert); err == nil {
		t.Error("a leeway of an hour accepted a token expired a minute ago")
	}
}

func TestRotationKeepsThenRemovesOldKey(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeys(t, c, AlgES256)
	cert := testCert(t, "alice")
	v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
	old := sign(t, ks, goodClaims(c, cert), nil)
	oldKID := ks.Signing().ID

	if _, err := ks.Rotate(AlgEdDSA); err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	if ks.Signing().ID == oldKID || ks.Signing().Alg != AlgEdDSA {
		t.Fatalf("signing key after Rotate = %s %s", ks.Signing().ID, ks.Signing().Alg)
	}
	if _, err := v.VerifyAccess(old, testAudience, cert); err != nil {
		t.Errorf("a token of the retired key before its keep period ended = %v", err)
	}
	jwks, _ := ks.JWKS()
	pk, err := ParseJWKS(jwks)
	if err != nil || len(pk.keys) != 2 {
		t.Fatalf("JWKS after Rotate = %s, %v; want both keys", jwks, err)
	}

	c.t = c.t.Add(21 * time.Minute)
	gone, err := ks.Prune()
	if err != nil || len(gone) != 1 || gone[0] != oldKID {
		t.Fatalf("Prune() = %v, %v; want the old key removed", gone, err)
	}
	c.t = c.t.Add(-21 * time.Minute) // as if the token were still fresh
	if _, err := v.VerifyAccess(old, testAudience, cert); err == nil || !strings.Contains(err.Error(), "unknown signing key") {
		t.Errorf("a token of a removed key = %v, want unknown signing key", err)
	}
}

func TestKeySetPersists(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	dir := t.TempDir()
	open := func() (*KeySet, *store.Store) {
		st, err := store.Open(filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		ks, err := OpenKeySet(st, AlgES256, time.Hour, c.now)
		if err != nil {
			t.Fatal(err)
		}
		return ks, st
	}
	ks, st := open()
	first := ks.Signing().ID
	st.Close()
	ks, st = open()
	defer st.Close()
	if ks.Signing().ID != first {
		t.Errorf("signing key after reopening = %s, want %s", ks.Signing().ID, first)
	}
}

func TestAssertionRoundTrip(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeys(t, c, AlgES256)
	jwks, _ := ks.JWKS()
	pk, err := ParseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Keys: pk, Issuer: testIssuer, MaxLifetime: AssertionLifetime, Now: c.now}
	digest := RequestDigest{HTTPMethod: "POST", Method: "tools/call", Name: "echo", BodySHA256: BodyDigest([]byte("{}"))}
	raw, err := ks.Sign(TypAssertion, NewAssertion(testIssuer, "spiffe://airlock.local/agent/alice", "demo", digest, "mcp:demo", c.t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyAssertion(raw, "demo")
	if err != nil || got.Request != digest || got.Subject != "spiffe://airlock.local/agent/alice" {
		t.Fatalf("VerifyAssertion() = %+v, %v", got, err)
	}
	if _, err := v.VerifyAssertion(raw, "other"); err == nil {
		t.Error("an assertion for demo was accepted for another resource")
	}
	cert := testCert(t, "alice")
	at := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: time.Hour, Now: c.now}
	if _, err := at.VerifyAccess(raw, "demo", cert); err == nil || !strings.Contains(err.Error(), "typ") {
		t.Errorf("an assertion used as an access token = %v, want refused for its typ", err)
	}
	c.t = c.t.Add(AssertionLifetime + time.Second)
	if _, err := v.VerifyAssertion(raw, "demo"); err == nil {
		t.Error("an expired assertion was accepted")
	}
}

func edKey() (any, any, error) {
	s, err := newSigner(AlgEdDSA)
	if err != nil {
		return nil, nil, err
	}
	return s.Public(), s, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// goodAccessClaims are goodClaims as a typed claims value.
func goodAccessClaims(c *clock, cert *x509.Certificate) *AccessClaims {
	return &AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: testIssuer, Subject: "spiffe://airlock.local/agent/alice",
			Audience: jwt.ClaimStrings{testAudience}, ID: "j1",
			IssuedAt: jwt.NewNumericDate(c.t), ExpiresAt: jwt.NewNumericDate(c.t.Add(5 * time.Minute)),
		},
		Scope: "mcp:demo",
		Cnf:   &Confirmation{X5tS256: Thumbprint(cert)},
	}
}

func TestReplayCache(t *testing.T) {
	var c ReplayCache
	now := time.Unix(1_800_000_000, 0)
	if !c.First("a", now.Add(time.Minute), now) {
		t.Fatal("first sight of a was refused")
	}
	if c.First("a", now.Add(time.Minute), now.Add(30*time.Second)) {
		t.Error("a replay inside the window was accepted")
	}
	if !c.First("b", now.Add(time.Minute), now) {
		t.Error("another jti was refused")
	}
	if !c.First("a", now.Add(3*time.Minute), now.Add(2*time.Minute)) {
		t.Error("a jti past its window is still remembered")
	}
}

func TestAssertedAgent(t *testing.T) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeys(t, c, AlgEdDSA)
	claims := NewAssertion(testIssuer, "spiffe://airlock.local/agent/alice", "demo",
		RequestDigest{HTTPMethod: "POST", Method: "tools/call", Name: "echo"}, "mcp:demo", c.t)
	raw, err := ks.Sign(TypAssertion, claims)
	if err != nil {
		t.Fatal(err)
	}
	if got := AssertedAgent(raw); got != "spiffe://airlock.local/agent/alice" {
		t.Errorf("AssertedAgent = %q", got)
	}
	for _, bad := range []string{"", "x.y.z", "e30.e30"} {
		if got := AssertedAgent(bad); got != "" {
			t.Errorf("AssertedAgent(%q) = %q, want nothing", bad, got)
		}
	}
}
