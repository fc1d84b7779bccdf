package token

import (
	"testing"
	"time"
)

// BenchmarkVerifyAccess is the full check of an access token, as the edge
// does it the first time it sees a token: parse, signature, claims,
// binding.
func BenchmarkVerifyAccess(b *testing.B) {
	for _, alg := range []string{AlgES256, AlgEdDSA} {
		b.Run(alg, func(b *testing.B) {
			c := &clock{time.Unix(1_800_000_000, 0)}
			ks := openKeysB(b, c, alg)
			cert := testCert(b, "alice")
			raw, err := ks.Sign(TypAccess, goodAccessClaims(c, cert))
			if err != nil {
				b.Fatal(err)
			}
			v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: 15 * time.Minute, Leeway: 30 * time.Second, Now: c.now}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyAccess(raw, testAudience, cert); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkThumbprint is what a cached token costs per request beyond a
// map lookup: the certificate's thumbprint, to check the binding.
func BenchmarkThumbprint(b *testing.B) {
	cert := testCert(b, "alice")
	for b.Loop() {
		Thumbprint(cert)
	}
}

// BenchmarkAssertion signs an identity assertion (the edge, per request)
// and verifies it (the connector, per request).
func BenchmarkAssertion(b *testing.B) {
	for _, alg := range []string{AlgES256, AlgEdDSA} {
		c := &clock{time.Unix(1_800_000_000, 0)}
		ks := openKeysB(b, c, alg)
		digest := RequestDigest{HTTPMethod: "POST", Method: "tools/call", Name: "echo", BodySHA256: BodyDigest([]byte("{}"))}
		claims := NewAssertion(testIssuer, "spiffe://airlock.local/agent/alice", "demo", digest, "mcp:demo", c.t)
		b.Run(alg+"/sign", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.Sign(TypAssertion, claims); err != nil {
					b.Fatal(err)
				}
			}
		})
		raw, _ := ks.Sign(TypAssertion, claims)
		v := &Verifier{Keys: ks, Issuer: testIssuer, MaxLifetime: AssertionLifetime, Now: c.now}
		b.Run(alg+"/verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyAssertion(raw, "demo"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
