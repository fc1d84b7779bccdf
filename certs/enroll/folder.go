package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockhq/airlock/certs"
)

// Names of the files in a holder's folder.
const (
	identityName   = "identity.pem"
	bundleName     = "ca.pem"
	enrollmentName = "enrollment.json"
)

// enrollHint tells a person how to get the files that [Load] misses.
const enrollHint = "enroll first: `airlock agent enroll` for an agent, or start the connector with `--token`"

// IdentityFile returns where the holder kept in dir has its private key
// and certificate chain: one PEM file (0600), the key first and then the
// chain leaf first, so that both are replaced by one rename. curl takes
// it as --cert.
func IdentityFile(dir string) string { return filepath.Join(dir, identityName) }

// BundleFile returns where the holder kept in dir has its trust bundle:
// the PEM of every root the deployment trusts (0644).
func BundleFile(dir string) string { return filepath.Join(dir, bundleName) }

// EnrollmentFile returns where the holder kept in dir records the edge
// it enrolled with and the identity it holds, as JSON (0644).
func EnrollmentFile(dir string) string { return filepath.Join(dir, enrollmentName) }

// enrollment is the content of the enrollment file.
type enrollment struct {
	EdgeURL  string `json:"edge_url"`
	Identity string `json:"identity"`
}

// Load opens the credential that [Enroll] kept in dir and checks that the
// private key belongs to the certificate and that the certificate asserts
// the recorded identity. It does not check expiry: an expired credential
// loads, and [Renewer.Run] reports it. The Holder uses a 30s timeout for
// its own requests.
func Load(dir string) (*Holder, error) {
	rec, err := readEnrollment(EnrollmentFile(dir))
	if err != nil {
		return nil, fmt.Errorf("loading credential from %s: %w", dir, err)
	}
	id, err := certs.ParseIdentity(rec.Identity)
	if err != nil {
		return nil, fmt.Errorf("loading credential from %s: reading %s: %w",
			dir, EnrollmentFile(dir), err)
	}
	cred, err := readIdentity(IdentityFile(dir))
	if err != nil {
		return nil, fmt.Errorf("loading credential from %s: %w", dir, err)
	}
	if got, err := certs.IdentityOf(cred.Leaf()); err != nil || got != id {
		return nil, fmt.Errorf("loading credential from %s: certificate in %s does not assert %s (enrollment.json): enroll again",
			dir, IdentityFile(dir), id)
	}
	bundle, err := readBundle(BundleFile(dir))
	if err != nil {
		return nil, fmt.Errorf("loading credential from %s: %w", dir, err)
	}
	return newHolder(dir, rec.EdgeURL, id, cred, bundle), nil
}

// LoadCurrent is [Load] for a program about to use the credential: it
// renews a certificate that is due ([RenewAt]) before it returns, and
// reports whether it did, so that an agent that only ever runs short
// commands keeps a fresh certificate too. An expired certificate is
// [ErrExpired]: renewal needs a valid one.
func LoadCurrent(ctx context.Context, dir string) (h *Holder, renewed bool, err error) {
	if h, err = Load(dir); err != nil {
		return nil, false, err
	}
	leaf := h.Credential().Leaf()
	if time.Now().After(leaf.NotAfter) {
		return nil, false, ErrExpired
	}
	if time.Now().Before(RenewAt(leaf, 0)) {
		return h, false, nil
	}
	if err := h.Renew(ctx); err != nil {
		return nil, false, fmt.Errorf("renewing the due certificate of %s: %w", h.Identity(), err)
	}
	return h, true, nil
}

// readFile reads file, explaining a missing one.
func readFile(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing: %s", file, enrollHint)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return data, nil
}

func readEnrollment(file string) (enrollment, error) {
	var rec enrollment
	data, err := readFile(file)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("reading %s: %w", file, err)
	}
	if _, err := parseEdgeURL(rec.EdgeURL); err != nil {
		return rec, fmt.Errorf("reading %s: %w", file, err)
	}
	return rec, nil
}

// readIdentity reads a key and its chain from one PEM file and checks that
// they belong together.
func readIdentity(file string) (*certs.Credential, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	chain, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if !samePublicKey(chain[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("reading %s: private key does not match the certificate", file)
	}
	return &certs.Credential{Chain: chain, Key: key}, nil
}

func readBundle(file string) ([]*x509.Certificate, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	bundle, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return bundle, nil
}

// parseKey returns the first private key in PEM data: PKCS #8, as
// [encodeIdentity] writes it, or SEC 1.
func parseKey(data []byte) (crypto.Signer, error) {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing private key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parsing private key: %T is not a signing key", key)
		}
		return signer, nil
	}
	return nil, errors.New("no private key")
}

// parseCertificates returns every certificate in PEM data, in order; data
// without one is an error.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var list []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		list = append(list, cert)
	}
	if len(list) == 0 {
		return nil, errors.New("no certificate")
	}
	return list, nil
}

// encodeIdentity returns the content of the identity file: the key as
// PKCS #8, then the chain.
func encodeIdentity(cred *certs.Credential) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cred.Key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return append(out, encodeCertificates(cred.Chain)...), nil
}

func encodeCertificates(list []*x509.Certificate) []byte {
	var out []byte
	for _, c := range list {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// writeEnrollment writes all three files of a new enrollment to dir,
// creating it (0700). The enrollment file comes last: it marks a
// complete folder.
func writeEnrollment(
	dir string,
	rec enrollment,
	cred *certs.Credential,
	bundle []*x509.Certificate,
) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating folder %s: %w", dir, err)
	}
	if err := writeFile(BundleFile(dir), encodeCertificates(bundle), 0o644); err != nil {
		return err
	}
	if err := writeIdentity(dir, cred); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", EnrollmentFile(dir), err)
	}
	return writeFile(EnrollmentFile(dir), append(data, '\n'), 0o644)
}

func writeIdentity(dir string, cred *certs.Credential) error {
	data, err := encodeIdentity(cred)
	if err != nil {
		return fmt.Errorf("writing %s: %w", IdentityFile(dir), err)
	}
	return writeFile(IdentityFile(dir), data, 0o600)
}

// writeFile replaces file atomically with data: it writes a temporary file
// with the final mode in the same folder, syncs it and renames it over
// file, so a reader (or a crash) sees the old content or the new, never a
// mix, and a key is never readable by others, not even briefly.
func writeFile(file string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename

	err = errors.Join(tmp.Chmod(perm), writeAll(tmp, data), tmp.Sync())
	if err := errors.Join(err, tmp.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

func writeAll(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

type publicKeyEqualer interface{ Equal(crypto.PublicKey) bool }

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(publicKeyEqualer)
	return ok && k.Equal(b)
}
