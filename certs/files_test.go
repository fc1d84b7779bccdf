package certs

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentialFilesRoundTrip(t *testing.T) {
	a, _ := newTestCA(t)
	cred := issue(t, a, KindConnector, "db")
	dir := filepath.Join(t.TempDir(), "new", "folder")
	certFile, keyFile := filepath.Join(dir, "db.crt"), filepath.Join(dir, "db.key")
	if err := cred.WriteFiles(certFile, keyFile); err != nil {
		t.Fatalf("WriteFiles() = %v", err)
	}

	for file, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatalf("WriteFiles() left no %s: %v", file, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", filepath.Base(file), got, want)
		}
	}

	got, err := LoadCredential(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadCredential() = %v", err)
	}
	if len(got.Chain) != len(cred.Chain) {
		t.Fatalf("LoadCredential() chain has %d certificates, want %d",
			len(got.Chain), len(cred.Chain))
	}
	for i := range cred.Chain {
		if !got.Chain[i].Equal(cred.Chain[i]) {
			t.Errorf("LoadCredential() chain[%d] differs from the one written", i)
		}
	}
	if !publicKeysEqual(got.Key.Public(), cred.Key.Public()) {
		t.Error("LoadCredential() key differs from the one written")
	}
}

func TestWriteFilesReplaces(t *testing.T) {
	a, _ := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	first, second := issue(t, a, KindAgent, "a"), issue(t, a, KindAgent, "a")
	for _, c := range []*Credential{first, second} {
		if err := c.WriteFiles(certFile, keyFile); err != nil {
			t.Fatalf("WriteFiles() = %v", err)
		}
	}
	got, err := LoadCredential(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadCredential() = %v", err)
	}
	if !got.Leaf().Equal(second.Leaf()) {
		t.Error("LoadCredential() after a second WriteFiles() = the first certificate, want the second")
	}

	// The atomic writes leave no temporary files behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %q, want only a.crt and a.key", names)
	}
}

func TestLoadCredentialRefuses(t *testing.T) {
	a, _ := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, c *Credential) (certFile, keyFile string) {
		certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if err := c.WriteFiles(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile
	}
	aCert, aKey := write("a", issue(t, a, KindAgent, "a"))
	_, bKey := write("b", issue(t, a, KindAgent, "b"))
	junk := filepath.Join(dir, "junk")
	writeTestFile(t, junk, "not PEM")

	tests := []struct {
		name      string
		cert, key string
		wantErr   string
	}{
		{"key of another certificate", aCert, bKey, "does not match"},
		{"no certificate file", filepath.Join(dir, "none.crt"), aKey, "none.crt"},
		{"no key file", aCert, filepath.Join(dir, "none.key"), "none.key"},
		{"certificate file without PEM", junk, aKey, "no certificate"},
		{"key file without PEM", aCert, junk, "junk"},
		{"key file holding a certificate", aCert, aCert, "a.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCredential(tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadCredential(%s, %s) = %v, want an error containing %q",
					filepath.Base(tt.cert), filepath.Base(tt.key), err, tt.wantErr)
			}
		})
	}
}

func TestReadCertificates(t *testing.T) {
	a, _ := newTestCA(t)
	cred := issue(t, a, KindAgent, "ci")
	dir := t.TempDir()
	certPEM := func(c *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	keyBlock := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}))
	brokenCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}))

	tests := []struct {
		name    string
		content string
		want    int    // certificates read
		wantErr string // empty means no error
	}{
		{name: "one", content: certPEM(cred.Leaf()), want: 1},
		{name: "chain", content: certPEM(cred.Leaf()) + certPEM(a.Intermediate()), want: 2},
		{name: "other blocks skipped", content: keyBlock + certPEM(a.Root()) + "text\n", want: 1},
		{name: "empty", content: "", wantErr: "no certificate"},
		{name: "only a key", content: keyBlock, wantErr: "no certificate"},
		{name: "broken certificate", content: brokenCert, wantErr: "parsing certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".pem")
			writeTestFile(t, file, tt.content)
			got, err := ReadCertificates(file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) ||
					!strings.Contains(err.Error(), file) {
					t.Errorf("ReadCertificates() = %v, want an error naming the file and containing %q",
						err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.want {
				t.Errorf("ReadCertificates() = %d certificates, %v, want %d, nil",
					len(got), err, tt.want)
			}
		})
	}
}

func TestWriteCertificatesReadPool(t *testing.T) {
	a, _ := newTestCA(t)
	other, _ := newTestCA(t)
	file := filepath.Join(t.TempDir(), "roots.pem")
	if err := WriteCertificates(file, a.Root()); err != nil {
		t.Fatalf("WriteCertificates() = %v", err)
	}
	pool, err := ReadPool(file)
	if err != nil {
		t.Fatalf("ReadPool() = %v", err)
	}
	const client = x509.ExtKeyUsageClientAuth
	if err := verifyChain(issue(t, a, KindAgent, "ci").Chain, pool, client); err != nil {
		t.Errorf("certificate of the CA does not verify against the pool read back: %v", err)
	}
	if err := verifyChain(issue(t, other, KindAgent, "ci").Chain, pool, client); err == nil {

		t.Error("certificate of another CA verifies against the pool, want an error")
	}
	if _, err := ReadPool(filepath.Join(t.TempDir(), "none.pem")); err == nil {
		t.Error("ReadPool() of a missing file = nil, want an error")
	}
}

func TestTLSCertificate(t *testing.T) {
	a, _ := newTestCA(t)
	cred := issue(t, a, KindAgent, "ci")
	tc := cred.TLSCertificate()
	if len(tc.Certificate) != len(cred.Chain) {
		t.Fatalf("TLSCertificate() has %d certificates, want %d",
			len(tc.Certificate), len(cred.Chain))
	}
	for i, c := range cred.Chain {
		if string(tc.Certificate[i]) != string(c.Raw) {
			t.Errorf("TLSCertificate().Certificate[%d] is not chain[%d]", i, i)
		}
	}
	if tc.Leaf != cred.Leaf() || tc.PrivateKey != cred.Key {
		t.Error("TLSCertificate() does not carry the credential's leaf and key")
	}
}
