// Package policytest helps tests of the policy's signed bundles.
package policytest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// SignedBundle returns an OPA bundle holding rego as /authz.rego, signed
// with key (RS256, key id "airlock"), as a bundle server serves it.
func SignedBundle(tb testing.TB, rego string, key *rsa.PrivateKey) []byte {
	tb.Helper()
	b := bundle.Bundle{
		Data: map[string]any{},
		Modules: []bundle.ModuleFile{{
			URL: "/authz.rego", Path: "/authz.rego", Raw: []byte(rego),
		}},
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(pemKey), "RS256", ""), "airlock", false); err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
