package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/pemutil"
)

// Credential is a certificate chain (leaf first) and the private key of its
// leaf.
type Credential struct {
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// Leaf returns the first certificate of the chain.
func (c *Credential) Leaf() *x509.Certificate {
	return c.Chain[0]
}

// TLSCertificate returns the credential in the form crypto/tls wants.
func (c *Credential) TLSCertificate() tls.Certificate {
	raw := make([][]byte, len(c.Chain))
	for i, cert := range c.Chain {
		raw[i] = cert.Raw
	}
	return tls.Certificate{Certificate: raw, PrivateKey: c.Key, Leaf: c.Chain[0]}
}

// WriteFiles writes the chain to certFile (0644) and the key to keyFile
// (0600), creating their folders. Each file is replaced atomically.
func (c *Credential) WriteFiles(certFile, keyFile string) error {
	if err := writeCerts(certFile, c.Chain...); err != nil {
		return err
	}
	block, err := pemutil.Serialize(c.Key)
	if err != nil {
		return fmt.Errorf("encoding private key: %w", err)
	}
	return writeFile(keyFile, pem.EncodeToMemory(block), 0o600)
}

// LoadCredential reads a chain and its key from PEM files and checks that
// they belong together. certFile and keyFile may be one file holding
// both, as enrolled holders keep them.
func LoadCredential(certFile, keyFile string) (*Credential, error) {
	chain, err := ReadCertificates(certFile)
	if err != nil {
		return nil, err
	}
	signer, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(chain[0].PublicKey, signer.Public()) {
		return nil, fmt.Errorf("private key %s does not match certificate %s", keyFile, certFile)
	}
	return &Credential{Chain: chain, Key: signer}, nil
}

// readKey reads the first private key block of a PEM file, skipping
// certificates.
func readKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		key, err := pemutil.ParseKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("reading private key %s: %w", file, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("reading private key %s: not a signing key", file)
		}
		return signer, nil
	}
	return nil, fmt.Errorf("reading private key: no private key in %s", file)
}

// ReadCertificates reads every certificate in a PEM file; a file with none
// is an error.
func ReadCertificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading certificates: %w", err)
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate in %s: %w", file, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("reading certificates: no certificate in %s", file)
	}
	return certs, nil
}

// ReadPool reads a PEM bundle of trusted roots into a pool.
func ReadPool(file string) (*x509.CertPool, error) {
	certs, err := ReadCertificates(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// WriteCertificates writes certificates as PEM to file (0644), replacing it
// atomically.
func WriteCertificates(file string, certs ...*x509.Certificate) error {
	return writeCerts(file, certs...)
}

func writeCerts(file string, certs ...*x509.Certificate) error {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return writeFile(file, out, 0o644)
}

// writeFile replaces file atomically: a reader sees the old or the new
// content, never a partial one.
func writeFile(file string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating folder for %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", file, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

type equaler interface{ Equal(crypto.PublicKey) bool }

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
