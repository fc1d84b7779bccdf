package token

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// FuzzParseScope checks that a scope that parses prints back to a scope
// that parses to the same items: the edge, the token and the agent agree
// on what a scope grants. The corpus is in testdata/fuzz/FuzzParseScope.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"mcp:demo", "mcp:demo:tools/call:read_file mcp:x", "mcp:a:resources/read:file:///x",
		"mcp::x", "mcp:demo:", " mcp:a\tmcp:a ", "MCP:demo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scope, err := ParseScope(s, nil)
		if err != nil {
			return
		}
		again, err := ParseScope(scope.String(), nil)
		if err != nil || again.String() != scope.String() || !again.Covers(scope) || !scope.Covers(again) {
			t.Fatalf("ParseScope(%q) = %q, which parses to %q, %v", s, scope.String(), again.String(), err)
		}
		for _, item := range scope {
			if strings.ContainsAny(item.String(), " \t\n") {
				t.Fatalf("item %q holds white space", item.String())
			}
		}
	})
}

// FuzzVerifyAccess feeds arbitrary tokens to the verifier, and tokens
// made from a valid one by changing its bytes: it must never panic and
// never accept one that is not the valid token. The corpus is in
// testdata/fuzz/FuzzVerifyAccess.
func FuzzVerifyAccess(f *testing.F) {
	v, cert, good := signedAccess(f)
	if _, err := v.VerifyAccess(good, testAudience, cert); err != nil {
		f.Fatalf("the valid token is refused: %v", err)
	}
	f.Add(good, 0, byte(0))
	f.Add("e30.e30.e30", 0, byte(0))
	f.Add(`eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.`, 0, byte(0))
	f.Fuzz(func(t *testing.T, raw string, at int, b byte) {
		if at > 0 && len(good) > 0 {
			// A change at one place of the valid token.
			i := at % len(good)
			raw = good[:i] + string(b) + good[i+1:]
		}
		if _, err := v.VerifyAccess(raw, testAudience, cert); err == nil && raw != good {
			t.Fatalf("VerifyAccess accepted %q, which is not the token signed", raw)
		}
	})
}

// TestVerifyAccessRefusesNonCanonicalBase64 is FuzzVerifyAccess's find: a
// signature whose last base64 character differs only in bits the
// decoding drops carried the same signed bytes, so another string passed
// as the same token.
func TestVerifyAccessRefusesNonCanonicalBase64(t *testing.T) {
	v, cert, good := signedAccess(t)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, good[len(good)-1])
	// An Ed25519 signature is 64 bytes, 86 characters: the last one's
	// four low bits are padding.
	twin := good[:len(good)-1] + string(alphabet[last^1])
	if _, err := v.VerifyAccess(twin, testAudience, cert); err == nil {
		t.Errorf("VerifyAccess accepted %q, a second spelling of the signed token", twin)
	}
}

// signedAccess returns a verifier, a certificate and a valid EdDSA access
// token bound to it.
func signedAccess(tb testing.TB) (*Verifier, *x509.Certificate, string) {
	tb.Helper()
	c := &clock{time.Unix(1_800_000_000, 0)}
	ks := openKeysB(tb, c, AlgEdDSA)
	cert := testCert(tb, "alice")
	v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
	good, err := ks.Sign(TypAccess, goodAccessClaims(c, cert))
	if err != nil {
		tb.Fatal(err)
	}
	return v, cert, good
}
