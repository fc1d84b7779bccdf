package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newTestCA creates a CA in a temporary folder and returns it with the
// folder.
func newTestCA(t *testing.T) (*Authority, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := Init(dir, DefaultTrustDomain)
	if err != nil {
		t.Fatalf("Init(%s) = %v", dir, err)
	}
	return a, dir
}

// issue returns a credential for kind/name with a one-hour lifetime.
func issue(t *testing.T, a *Authority, kind Kind, name string) *Credential {
	t.Helper()
	return mustIssue(t, a, SignRequest{Kind: kind, Name: name, Lifetime: time.Hour})
}

// verifyChain checks chain (leaf first, no root) against roots.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

func TestInitFiles(t *testing.T) {
	a, dir := newTestCA(t)
	tests := []struct {
		file string
		perm os.FileMode
	}{
		{"root.crt", 0o644},
		{"root.key", 0o600},
		{"intermediate.crt", 0o644},
		{"intermediate.key", 0o600},
		{"ca.json", 0o644},
	}
	for _, tt := range tests {
		fi, err := os.Stat(filepath.Join(dir, tt.file))
		if err != nil {
			t.Errorf("Init() left no %s: %v", tt.file, err)
			continue
		}
		if got := fi.Mode().Perm(); got != tt.perm {
			t.Errorf("%s has mode %v, want %v", tt.file, got, tt.perm)
		}
	}
	if got := RootFile(dir); got != filepath.Join(dir, "root.crt") {
		t.Errorf("RootFile(%s) = %s, want root.crt inside it", dir, got)
	}
	if a.TrustDomain() != DefaultTrustDomain {
		t.Errorf("TrustDomain() = %q, want %q", a.TrustDomain(), DefaultTrustDomain)
	}

	// No temporary files are left behind by the atomic writes.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("Init() left %q in %s, want only the %d CA files", names, dir, len(tests))
	}
}

func TestInitCACertificates(t *testing.T) {
	a, _ := newTestCA(t)
	root, inter := a.Root(), a.Intermediate()
	tests := []struct {
		name   string
		cert   *x509.Certificate
		parent *x509.Certificate
		life   time.Duration
	}{
		{"root", root, root, RootLifetime},
		{"intermediate", inter, root, IntermediateLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.cert.IsCA {
				t.Error("IsCA = false, want true")
			}
			if got := tt.cert.NotAfter.Sub(tt.cert.NotBefore); got != tt.life {
				t.Errorf("lifetime = %v, want %v", got, tt.life)
			}
			if err := tt.cert.CheckSignatureFrom(tt.parent); err != nil {
				t.Errorf("not signed by %s: %v", tt.parent.Subject, err)
			}
			if !strings.Contains(tt.cert.Subject.CommonName, DefaultTrustDomain) {
				t.Errorf("CommonName = %q, want it to name the trust domain",
					tt.cert.Subject.CommonName)
			}
		})
	}
}

func TestInitRefuses(t *testing.T) {
	_, dir := newTestCA(t)
	if _, err := Init(dir, DefaultTrustDomain); !errors.Is(err, ErrExists) {
		t.Errorf("Init() over an existing CA = %v, want ErrExists", err)
	}

	bad := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(bad, "bad/domain"); err == nil {
		t.Fatal("Init() with trust domain bad/domain = nil, want an error")
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Init() with an invalid domain created %s (stat: %v), want nothing written",
			bad, err)
	}
}

func TestLoad(t *testing.T) {
	a, dir := newTestCA(t)
	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s) = %v", dir, err)
	}
	if loaded.TrustDomain() != a.TrustDomain() {
		t.Errorf("Load().TrustDomain() = %q, want %q", loaded.TrustDomain(), a.TrustDomain())
	}
	if !loaded.Root().Equal(a.Root()) || !loaded.Intermediate().Equal(a.Intermediate()) {
		t.Error("Load() returned other CA certificates than Init made")
	}

	// The loaded CA signs with the same intermediate key.
	cred := issue(t, loaded, KindAgent, "ci")
	if err := verifyChain(cred.Chain, a.Pool(), x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("certificate from the loaded CA does not verify against the original root: %v",
			err)
	}
}

func TestLoadRefuses(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load() of an empty folder = nil, want an error")
	}

	// Each case damages one file of a good CA: content "" removes it.
	tests := []struct {
		name, file, content string
	}{
		{"no settings", "ca.json", ""},
		{"bad settings", "ca.json", "{"},
		{"no root", "root.crt", ""},
		{"garbage root", "root.crt", "junk"},
		{"no intermediate", "intermediate.crt", ""},
		{"no intermediate key", "intermediate.key", ""},
		{"garbage intermediate key", "intermediate.key", "junk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dir := newTestCA(t)
			file := filepath.Join(dir, tt.file)
			if tt.content == "" {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			} else {
				writeTestFile(t, file, tt.content)
			}
			if _, err := Load(dir); err == nil {
				t.Errorf("Load(%s) = nil, want an error", dir)
			}
		})
	}
}

func TestPoolIsACopy(t *testing.T) {
	a, _ := newTestCA(t)
	other, _ := newTestCA(t)
	p := a.Pool()
	p.AddCert(other.Root())

	cred := issue(t, other, KindAgent, "ci")
	if err := verifyChain(cred.Chain, a.Pool(), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("changing a pool from Pool() changed the CA's own: another CA's certificate verifies")

	}
}

func TestIssue(t *testing.T) {
	a, _ := newTestCA(t)
	tests := []struct {
		kind    Kind
		name    string
		wantEKU []x509.ExtKeyUsage
		// wantDNS is what the certificate carries of the requested
		// DNSNames: only edges are servers.
		wantDNS []string
	}{
		{KindAgent, "ci", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
		{KindConnector, "db-1", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
		{KindAdmin, "alice", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil},
		{
			KindEdge, "eu.west_1",
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
			[]string{"edge.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			const life = 2 * time.Hour
			before := time.Now()
			cred, err := a.Issue(context.Background(), SignRequest{
				Kind:        tt.kind,
				Name:        tt.name,
				Lifetime:    life,
				DNSNames:    []string{"edge.example.com"},
				IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			})
			after := time.Now()
			if err != nil {
				t.Fatalf("Issue() = %v", err)
			}
			leaf := cred.Leaf()

			wantURI := "spiffe://airlock.local/" + string(tt.kind) + "/" + tt.name
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantURI {
				t.Errorf("URIs = %v, want exactly [%s]", leaf.URIs, wantURI)
			}
			wantID := Identity{DefaultTrustDomain, tt.kind, tt.name}
			if id, err := IdentityOf(leaf); err != nil || id != wantID {
				t.Errorf("IdentityOf(leaf) = %v, %v, want %s", id, err, wantURI)
			}
			if leaf.Subject.CommonName != tt.name {
				t.Errorf("CommonName = %q, want %q", leaf.Subject.CommonName, tt.name)
			}
			if diff := cmp.Diff(tt.wantEKU, leaf.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDNS, leaf.DNSNames); diff != "" {
				t.Errorf("DNSNames mismatch (-want +got):\n%s", diff)
			}
			if tt.kind != KindEdge && len(leaf.IPAddresses) != 0 {
				t.Errorf("IPAddresses = %v on a %s certificate, want none",
					leaf.IPAddresses, tt.kind)
			}
			if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("IsCA = %v, KeyUsage = %v, want a leaf for signatures only",
					leaf.IsCA, leaf.KeyUsage)
			}
			checkValidity(t, leaf, before, after, life)

			if len(cred.Chain) != 2 || !cred.Chain[1].Equal(a.Intermediate()) {
				t.Errorf("chain has %d certificates, want the leaf and the intermediate",
					len(cred.Chain))
			}
			if err := verifyChain(cred.Chain, a.Pool(), tt.wantEKU[0]); err != nil {
				t.Errorf("chain does not verify against the root: %v", err)
			}
		})
	}
}

// checkValidity checks that a leaf issued between before and after starts
// Backdate earlier and lives for life. Certificates hold whole seconds.
func checkValidity(
	t *testing.T,
	leaf *x509.Certificate,
	before, after time.Time,
	life time.Duration,
) {
	t.Helper()
	within := func(field string, got, lo, hi time.Time) {
		if got.Before(lo.Truncate(time.Second)) || got.After(hi) {
			t.Errorf("%s = %v, want between %v and %v", field, got, lo, hi)
		}
	}
	within("NotBefore", leaf.NotBefore, before.Add(-Backdate), after.Add(-Backdate))
	within("NotAfter", leaf.NotAfter, before.Add(life), after.Add(life))
}

func TestIssueLifetime(t *testing.T) {
	a, _ := newTestCA(t)
	tests := []struct {
		name     string
		lifetime time.Duration
		wantErr  bool
	}{
		{"zero", 0, true},
		{"negative", -time.Hour, true},
		{"one second", time.Second, false},
		{"maximum", MaxLeafLifetime, false},
		{"above maximum", MaxLeafLifetime + time.Second, true},
		{"a year", 365 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			req := SignRequest{Kind: KindAgent, Name: "ci", Lifetime: tt.lifetime}
			cred, err := a.Issue(context.Background(), req)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "lifetime") {
					t.Errorf("Issue(lifetime %v) = %v, want a lifetime error", tt.lifetime, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue(lifetime %v) = %v, want nil", tt.lifetime, err)
			}
			checkValidity(t, cred.Leaf(), before, time.Now(), tt.lifetime)
		})
	}
}

func TestIssueRefusesIdentity(t *testing.T) {
	a, _ := newTestCA(t)
	tests := []struct {
		name string
		kind Kind
		id   string
	}{
		{"empty name", KindAgent, ""},
		{"uppercase name", KindAgent, "CI"},
		{"name with slash", KindConnector, "db/1"},
		{"name too long", KindAgent, strings.Repeat("a", 65)},
		{"unknown kind", "robot", "ci"},
		{"empty kind", "", "ci"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := SignRequest{Kind: tt.kind, Name: tt.id, Lifetime: time.Hour}
			if cred, err := a.Issue(context.Background(), req); err == nil {
				t.Errorf("Issue(%s %q) = %v, want an error", tt.kind, tt.id, cred.Leaf().URIs)
			}
		})
	}
}

// newCSR returns a certificate request made from tmpl with a new key on
// curve, and the key.
func newCSR(
	t *testing.T,
	curve elliptic.Curve,
	tmpl *x509.CertificateRequest,
) (*x509.CertificateRequest, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr, key
}

func mustASN1(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignIgnoresWhatTheCSRAsks(t *testing.T) {
	a, _ := newTestCA(t)
	var (
		extKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
		basicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
		serverAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
		customOID        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
		isCA             = struct{ IsCA bool }{true}
	)
	// A CSR asking for more than its holder may have: another identity,
	// server names, server use, CA powers and an extension of its own.
	csr, key := newCSR(t, elliptic.P256(), &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:         "root",
			Organization:       []string{"Airlock admin"},
			OrganizationalUnit: []string{"ops"},
		},
		DNSNames:       []string{"edge.example.com"},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{mustURL(t, "spiffe://airlock.local/admin/root")},
		ExtraExtensions: []pkix.Extension{
			{Id: extKeyUsage, Value: mustASN1(t, []asn1.ObjectIdentifier{serverAuth})},
			{Id: basicConstraints, Critical: true, Value: mustASN1(t, isCA)},
			{Id: customOID, Value: mustASN1(t, "anything")},
		},
	})

	req := SignRequest{Kind: KindAgent, Name: "ci", Lifetime: time.Hour}
	chain, err := a.Sign(context.Background(), csr, req)
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	leaf := chain[0]
	wantID := Identity{DefaultTrustDomain, KindAgent, "ci"}
	if id, err := IdentityOf(leaf); err != nil || id != wantID {
		t.Errorf("IdentityOf(signed) = %v, %v, want the agent ci", id, err)
	}
	if len(leaf.DNSNames) != 0 || len(leaf.EmailAddresses) != 0 || len(leaf.URIs) != 1 {
		t.Errorf("Sign() kept names from the CSR: DNS %q, email %q, URIs %v",
			leaf.DNSNames, leaf.EmailAddresses, leaf.URIs)
	}
	wantSubject := pkix.Name{CommonName: "ci", Organization: []string{"Airlock agent"}}
	if got := leaf.Subject.String(); got != wantSubject.String() {
		t.Errorf("Subject = %s, want %s", got, wantSubject.String())
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if diff := cmp.Diff(wantEKU, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage mismatch (-want +got):\n%s", diff)
	}
	if leaf.IsCA {
		t.Error("IsCA = true, want a CSR never to make a CA")
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(customOID) {
			t.Errorf("Sign() copied extension %v from the CSR", ext.Id)
		}
	}
	if err := verifyChain(chain, a.Pool(), x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("an agent certificate verifies for server use")
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("Sign() certified another key than the CSR's")
	}
}

func TestSignRefusesWeakKey(t *testing.T) {
	a, _ := newTestCA(t)
	csr, _ := newCSR(t, elliptic.P224(), &x509.CertificateRequest{})
	req := SignRequest{Kind: KindAgent, Name: "ci", Lifetime: time.Hour}
	_, err := a.Sign(context.Background(), csr, req)
	if err == nil || !strings.Contains(err.Error(), "P-224") {

		t.Errorf("Sign() of a P-224 key = %v, want an error naming the curve", err)
	}
}

func TestCheckPublicKey(t *testing.T) {
	ecKey := func(c elliptic.Curve) any {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	rsaKey := func(bits int) any {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	edKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     any
		wantErr string // empty means accepted
	}{
		{name: "P-256", key: ecKey(elliptic.P256())},
		{name: "P-384", key: ecKey(elliptic.P384())},
		{name: "P-521", key: ecKey(elliptic.P521())},
		{name: "P-224", key: ecKey(elliptic.P224()), wantErr: "P-224"},
		{name: "RSA 2048", key: rsaKey(2048)},
		{name: "RSA 1024", key: rsaKey(1024), wantErr: "1024 bits"},
		{name: "Ed25519", key: edKey},
		{name: "not a key", key: "key", wantErr: "unsupported public key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPublicKey(tt.key)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckPublicKey(%s) = %v, want nil", tt.name, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckPublicKey(%s) = %v, want an error containing %q",
					tt.name, err, tt.wantErr)
			}
		})
	}
}

func writeTestFile(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
