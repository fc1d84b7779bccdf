package enroll

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/airlockhq/airlock/certs"
)

// newKeyAndCSR makes a P-256 key on this host and a PEM CSR for it. The
// CSR names at most the common name cn, the name we expect: the edge
// takes the identity from the token or the presented certificate and
// refuses a CSR with any other name, so an unknown name stays empty.
func newKeyAndCSR(cn string) (crypto.Signer, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generating key: %w", err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, "", fmt.Errorf("creating certificate request: %w", err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	return key, string(csr), nil
}

// issued is an answer of the edge that passed [checkAnswer].
type issued struct {
	id     certs.Identity
	cred   *certs.Credential
	bundle []*x509.Certificate
}

// checkAnswer checks what the edge issued for key: the chain parses, is
// for key, verifies for client authentication to the answer's trust
// bundle (or to fallback when the answer carries none), and asserts the
// identity the answer names, which must match want (see [checkIdentity]).
// The answer came over TLS verified against roots we already trust, so
// its bundle is as authentic as they are.
func checkAnswer(
	resp Response,
	key crypto.Signer,
	fallback []*x509.Certificate,
	want certs.Identity,
) (*issued, error) {
	chain, err := parseCertificates([]byte(resp.Certificate))
	if err != nil {
		return nil, fmt.Errorf("reading issued certificate: %w", err)
	}
	if !samePublicKey(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("issued certificate is not for the key we sent")
	}
	bundle := fallback
	if strings.TrimSpace(resp.TrustBundle) != "" {
		if bundle, err = parseCertificates([]byte(resp.TrustBundle)); err != nil {
			return nil, fmt.Errorf("reading trust bundle of the answer: %w", err)
		}
	}
	if err := verifyChain(chain, bundle); err != nil {
		return nil, fmt.Errorf("verifying issued certificate: %w", err)
	}
	id, err := certs.IdentityOf(chain[0])
	if err != nil {
		return nil, fmt.Errorf("reading identity of issued certificate: %w", err)
	}
	if err := checkIdentity(id, want); err != nil {
		return nil, err
	}
	if resp.Identity != id.String() {
		return nil, fmt.Errorf("answer names identity %q but the certificate asserts %s",
			resp.Identity, id)
	}
	return &issued{id: id, cred: &certs.Credential{Chain: chain, Key: key}, bundle: bundle}, nil
}

// checkIdentity compares an issued identity with the one expected: the
// kind always, the name and the trust domain when want sets them.
func checkIdentity(got, want certs.Identity) error {
	switch {
	case got.Kind != want.Kind:
		return fmt.Errorf("edge issued %s, an identity of kind %s, want kind %s",
			got, got.Kind, want.Kind)
	case want.Name != "" && got.Name != want.Name:
		return fmt.Errorf("edge issued %s, want the name %q", got, want.Name)
	case want.Domain != "" && got.Domain != want.Domain:
		return fmt.Errorf("edge issued %s, want trust domain %s", got, want.Domain)
	}
	return nil
}

// verifyChain verifies chain (leaf first, without the root) for client
// authentication against roots.
func verifyChain(chain []*x509.Certificate, roots []*x509.Certificate) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         newPool(roots),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

func newPool(list []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range list {
		pool.AddCert(c)
	}
	return pool
}

// parseEdgeURL checks the address of an edge's front door and returns it
// without a trailing slash, ready for a path to be appended.
func parseEdgeURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parsing edge URL: %w", err)
	}
	plain := u.User == nil && u.RawQuery == "" && u.Fragment == ""
	if u.Scheme != "https" || u.Host == "" || !plain {
		return "", fmt.Errorf("edge URL %q is not of the form https://host:port", s)
	}
	return strings.TrimRight(s, "/"), nil
}
