package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"
)

// Lifetimes of the CA's own certificates and the bounds on leaves.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
	MaxLeafLifetime      = 30 * 24 * time.Hour
	// Backdate is how far a leaf's NotBefore lies in the past, so that a
	// peer whose clock runs a little behind accepts it at once.
	Backdate = time.Minute
)

// ErrExists is returned by [Init] when the folder already holds a CA.
var ErrExists = errors.New("certificate authority already exists")

// Authority issues and checks Airlock certificates. It keeps the active
// root and intermediate, which sign, and during a rotation a prepared
// next pair and a retired previous pair, whose roots stay trusted. It is
// safe for concurrent use.
type Authority struct {
	domain string
	dir    string

	// mu guards the pairs and the pool.
	mu       sync.RWMutex
	active   *caPair
	next     *caPair
	previous *caPair
	pool     *x509.CertPool
}

// caPair is a root and the intermediate it certified, with the
// intermediate's key in smallstep's embedded authority.
type caPair struct {
	root         *x509.Certificate
	intermediate *x509.Certificate
	ca           *authority.Authority
}

type caFiles struct {
	dir string
}

func (f caFiles) rootCert() string         { return filepath.Join(f.dir, "root.crt") }
func (f caFiles) rootKey() string          { return filepath.Join(f.dir, "root.key") }
func (f caFiles) intermediateCert() string { return filepath.Join(f.dir, "intermediate.crt") }
func (f caFiles) intermediateKey() string  { return filepath.Join(f.dir, "intermediate.key") }
func (f caFiles) settings() string         { return filepath.Join(f.dir, "ca.json") }
func (f caFiles) next() caFiles            { return caFiles{filepath.Join(f.dir, "next")} }
func (f caFiles) previous() caFiles        { return caFiles{filepath.Join(f.dir, "previous")} }

// pairFiles are a pair's files, the root certificate last: its presence
// marks a complete pair.
func (f caFiles) pairFiles() []string {
	return []string{f.rootKey(), f.intermediateKey(), f.intermediateCert(), f.rootCert()}
}

type caSettings struct {
	TrustDomain string `json:"trust_domain"`
}

// RootFile returns where the root certificate of a CA kept in dir lives;
// agents and connectors trust this file.
func RootFile(dir string) string {
	return caFiles{dir}.rootCert()
}

// Init creates a new CA in dir for the trust domain: a root, an
// intermediate that signs leaves, and their keys (0600). It returns
// [ErrExists] if dir already holds one.
func Init(dir, domain string) (*Authority, error) {
	f := caFiles{dir}
	if _, err := os.Stat(f.rootCert()); err == nil {
		return nil, fmt.Errorf("creating CA in %s: %w", dir, ErrExists)
	}
	if err := (Identity{Domain: domain, Kind: KindEdge, Name: "x"}).Validate(); err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	settings, err := json.Marshal(caSettings{TrustDomain: domain})
	if err != nil {
		return nil, err
	}
	if err := writeFile(f.settings(), settings, 0o644); err != nil {
		return nil, fmt.Errorf("creating CA in %s: %w", dir, err)
	}
	active, err := createPair(f, domain)
	if err != nil {
		return nil, fmt.Errorf("creating CA in %s: %w", dir, err)
	}
	a := &Authority{domain: domain, dir: dir, active: active}
	a.rebuildPoolLocked()
	return a, nil
}

// createPair makes a new root and intermediate and writes them to f.
func createPair(f caFiles, domain string) (*caPair, error) {
	stamp := time.Now().UTC().Format("2006-01-02")
	root, rootKey, err := newCACert("Airlock Root CA "+domain+" "+stamp, x509util.DefaultRootTemplate, RootLifetime, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("creating root: %w", err)
	}
	inter, interKey, err := newCACert("Airlock Intermediate CA "+domain+" "+stamp, x509util.DefaultIntermediateTemplate, IntermediateLifetime, root, rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating intermediate: %w", err)
	}
	steps := []func() error{
		func() error { return writeKey(f.rootKey(), rootKey) },
		func() error { return writeKey(f.intermediateKey(), interKey) },
		func() error { return writeCerts(f.intermediateCert(), inter) },
		func() error { return writeCerts(f.rootCert(), root) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return newPair(root, inter, interKey)
}

// Load opens the CA kept in dir by [Init], with the pairs of a rotation
// in progress.
func Load(dir string) (*Authority, error) {
	f := caFiles{dir}
	data, err := os.ReadFile(f.settings())
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	var s caSettings
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("loading CA settings %s: %w", f.settings(), err)
	}
	if err := finishActivation(f); err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	a := &Authority{domain: s.TrustDomain, dir: dir}
	if a.active, err = loadPair(f); err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	for _, opt := range []struct {
		files caFiles
		dst   **caPair
	}{{f.next(), &a.next}, {f.previous(), &a.previous}} {
		if _, err := os.Stat(opt.files.rootCert()); err != nil {
			continue
		}
		if *opt.dst, err = loadPair(opt.files); err != nil {
			return nil, fmt.Errorf("loading CA: %w", err)
		}
	}
	a.rebuildPoolLocked()
	return a, nil
}

func loadPair(f caFiles) (*caPair, error) {
	roots, err := ReadCertificates(f.rootCert())
	if err != nil {
		return nil, err
	}
	inters, err := ReadCertificates(f.intermediateCert())
	if err != nil {
		return nil, err
	}
	key, err := pemutil.Read(f.intermediateKey())
	if err != nil {
		return nil, fmt.Errorf("reading intermediate key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("reading intermediate key %s: not a signing key", f.intermediateKey())
	}
	return newPair(roots[0], inters[0], signer)
}

func newPair(root, inter *x509.Certificate, key crypto.Signer) (*caPair, error) {
	ca, err := authority.NewEmbedded(
		authority.WithX509RootCerts(root),
		authority.WithX509Signer(inter, key),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("starting embedded authority: %w", err)
	}
	return &caPair{root: root, intermediate: inter, ca: ca}, nil
}

func (a *Authority) rebuildPoolLocked() {
	pool := x509.NewCertPool()
	for _, p := range []*caPair{a.active, a.next, a.previous} {
		if p != nil {
			pool.AddCert(p.root)
		}
	}
	a.pool = pool
}

func newCACert(cn, tmpl string, life time.Duration, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509util.CreateCertificateRequest(cn, nil, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509util.NewCertificate(csr, x509util.WithTemplate(tmpl, x509util.CreateTemplateData(cn, nil)))
	if err != nil {
		return nil, nil, err
	}
	t := cert.GetCertificate()
	t.NotBefore = time.Now().Add(-Backdate)
	t.NotAfter = t.NotBefore.Add(life)
	if parent == nil {
		parent, parentKey = t, key
	}
	signed, err := x509util.CreateCertificate(t, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	return signed, key, nil
}

func writeKey(file string, key crypto.Signer) error {
	block, err := pemutil.Serialize(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", file, err)
	}
	return writeFile(file, pem.EncodeToMemory(block), 0o600)
}

// TrustDomain returns the SPIFFE trust domain of the CA.
func (a *Authority) TrustDomain() string { return a.domain }

// Root returns the active root certificate.
func (a *Authority) Root() *x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.active.root
}

// Intermediate returns the certificate that signs leaves now.
func (a *Authority) Intermediate() *x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.active.intermediate
}

// Bundle returns every root the deployment trusts: the active one first,
// then during a rotation the next and the previous one. The slice is the
// caller's.
func (a *Authority) Bundle() []*x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []*x509.Certificate{a.active.root}
	for _, p := range []*caPair{a.next, a.previous} {
		if p != nil {
			out = append(out, p.root)
		}
	}
	return out
}

// Pool returns a new pool holding every root of [Authority.Bundle], for
// verifying peers.
func (a *Authority) Pool() *x509.CertPool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.pool.Clone()
}

// SignRequest says what a leaf certificate asserts.
type SignRequest struct {
	// Kind and Name make the SPIFFE ID, in the authority's trust domain.
	Kind Kind
	Name string
	// Lifetime of the certificate; at most [MaxLeafLifetime].
	Lifetime time.Duration
	// DNSNames and IPAddresses are added for servers (edges) only.
	DNSNames    []string
	IPAddresses []net.IP
}

// Sign issues a certificate for the public key in csr, asserting what req
// says. The names in csr are ignored: the identity comes from req alone.
// It returns the chain leaf first, without the root.
func (a *Authority) Sign(ctx context.Context, csr *x509.CertificateRequest, req SignRequest) ([]*x509.Certificate, error) {
	id, err := NewIdentity(a.domain, req.Kind, req.Name)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	if req.Lifetime <= 0 || req.Lifetime > MaxLeafLifetime {
		return nil, fmt.Errorf("signing certificate for %s: lifetime %s outside (0, %s]", id, req.Lifetime, MaxLeafLifetime)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", id, err)
	}

	now := time.Now()
	shape := provisioner.CertificateEnforcerFunc(func(c *x509.Certificate) error {
		shapeLeaf(c, id, req, now)
		return nil
	})
	a.mu.RLock()
	signer := a.active.ca
	a.mu.RUnlock()
	chain, err := signer.SignWithContext(ctx, csr, provisioner.SignOptions{}, shape)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", id, err)
	}
	return chain, nil
}

// shapeLeaf sets every field the CA vouches for, whatever the CSR asked.
func shapeLeaf(c *x509.Certificate, id Identity, req SignRequest, now time.Time) {
	// smallstep copies the CSR's extensions, basic constraints and subject
	// into the template, and extensions there win over every field set
	// below when the certificate is encoded: drop them all.
	c.ExtraExtensions = nil
	c.UnknownExtKeyUsage = nil
	c.BasicConstraintsValid = false
	c.IsCA = false
	c.RawSubject = nil
	c.Subject = pkix.Name{CommonName: id.Name, Organization: []string{"Airlock " + string(id.Kind)}}
	c.URIs = []*url.URL{id.URI()}
	c.EmailAddresses = nil
	c.DNSNames = nil
	c.IPAddresses = nil
	c.KeyUsage = x509.KeyUsageDigitalSignature
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if id.Kind == KindEdge {
		c.DNSNames = req.DNSNames
		c.IPAddresses = req.IPAddresses
		c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	c.NotBefore = now.Add(-Backdate)
	c.NotAfter = now.Add(req.Lifetime)
}

// Issue makes a fresh key and a certificate for it. Use it where the key
// is made in the same process that the CA runs in (the edge's own serving
// certificate, the local quickstart); everywhere else the holder makes its
// key and sends a CSR.
func (a *Authority) Issue(ctx context.Context, req SignRequest) (*Credential, error) {
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	csr, err := x509util.CreateCertificateRequest(req.Name, nil, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request: %w", err)
	}
	chain, err := a.Sign(ctx, csr, req)
	if err != nil {
		return nil, err
	}
	return &Credential{Chain: chain, Key: key}, nil
}

// CheckPublicKey refuses keys too weak to hold an identity: RSA under 2048
// bits and elliptic curves other than P-256, P-384 and P-521. Ed25519 is
// accepted.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("unsupported elliptic curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak (want at least 2048)", k.N.BitLen())
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
}
