package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockhq/airlock/certs"
)

func TestLoadRoundTrip(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	got, err := Load(h.Dir())
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if got.Identity() != h.Identity() || got.EdgeURL() != h.EdgeURL() || got.Dir() != h.Dir() {
		t.Errorf("Load() = %s at %s in %s, want %s at %s in %s",
			got.Identity(), got.EdgeURL(), got.Dir(), h.Identity(), h.EdgeURL(), h.Dir())
	}
	if !sameCertificates(got.Credential().Chain, h.Credential().Chain) {
		t.Error("Load() returned another chain than Enroll()")
	}
	if !samePublicKey(h.Credential().Key.Public(), got.Credential().Key.Public()) {
		t.Error("Load() returned another key than Enroll()")
	}
	if !sameCertificates(got.Bundle(), h.Bundle()) {
		t.Error("Load() returned another bundle than Enroll()")
	}
}

func TestLoadMismatchedKey(t *testing.T) {
	e := newFakeEdge(t)
	a, b := enrollAgent(t, e), enrollAgent(t, e)
	mixed := &certs.Credential{Chain: a.Credential().Chain, Key: b.Credential().Key}
	data, err := encodeIdentity(mixed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(IdentityFile(a.Dir()), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(a.Dir())
	want := IdentityFile(a.Dir()) + ": private key does not match the certificate"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load() = %v, want an error containing %q", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	e := newFakeEdge(t)
	tests := []struct {
		name    string
		missing []string // files removed from an enrolled folder
		want    string   // file the error must name
	}{
		{"empty folder", []string{identityName, bundleName, enrollmentName}, enrollmentName},
		{"no identity", []string{identityName}, identityName},
		{"no bundle", []string{bundleName}, bundleName},
		{"no enrollment", []string{enrollmentName}, enrollmentName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := enrollAgent(t, e).Dir()
			for _, f := range tt.missing {
				os.Remove(filepath.Join(dir, f))
			}
			_, err := Load(dir)
			want := filepath.Join(dir, tt.want) + " is missing"
			hint := "airlock agent enroll"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), hint) {
				t.Errorf("Load() = %v, want an error containing %q and how to enroll", err, want)
			}
		})
	}
}

func TestRenew(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	var changes atomic.Int32
	h.OnChange(func() { changes.Add(1) })
	removed := h.OnChange(func() { t.Error("removed hook was called") })
	removed()
	before := h.Credential()
	fileBefore, _ := os.ReadFile(IdentityFile(h.Dir()))

	if err := h.Renew(context.Background()); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	after := h.Credential()
	if after.Leaf().SerialNumber.Cmp(before.Leaf().SerialNumber) == 0 {
		t.Error("Renew() kept the serial number")
	}
	if samePublicKey(before.Key.Public(), after.Key.Public()) {
		t.Error("Renew() kept the key")
	}
	if id, _ := certs.IdentityOf(after.Leaf()); id != h.Identity() {
		t.Errorf("renewed certificate asserts %s, want %s", id, h.Identity())
	}
	if got := changes.Load(); got != 1 {
		t.Errorf("change hook called %d times, want 1", got)
	}

	fileAfter, _ := os.ReadFile(IdentityFile(h.Dir()))
	if bytes.Equal(fileBefore, fileAfter) {
		t.Error("Renew() did not replace identity.pem")
	}
	loaded, err := Load(h.Dir())
	if err != nil {
		t.Fatalf("Load() after Renew() = %v", err)
	}
	if !loaded.Credential().Leaf().Equal(after.Leaf()) {
		t.Error("Load() after Renew() returned another certificate than the renewed one")
	}
	checkModes(t, h.Dir(), map[string]os.FileMode{"identity.pem": 0o600, "ca.pem": 0o644})
}

func TestRenewRefusals(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*fakeEdge)
		wantErr string
		refused *RefusedError
	}{
		{
			name: "revoked",
			edit: func(e *fakeEdge) {
				e.refuse = &fakeRefusal{http.StatusForbidden, `{"error":"revoked","error_description":"certificate was revoked"}`}
			},
			refused: &RefusedError{Status: 403, Code: CodeRevoked, Description: "certificate was revoked"},
		},
		{"another identity", func(e *fakeEdge) { e.signName = "other" }, `want the name "ci"`, nil},
		{"another kind", func(e *fakeEdge) { e.signKind = certs.KindConnector }, "want kind agent", nil},
		{"another key", func(e *fakeEdge) { e.foreignKey = true }, "not for the key", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEdge(t)
			h := enrollAgent(t, e)
			h.OnChange(func() { t.Error("change hook called after a failed Renew()") })
			before := h.Credential()
			fileBefore, _ := os.ReadFile(IdentityFile(h.Dir()))
			tt.edit(e)

			err := h.Renew(context.Background())
			var refused *RefusedError
			switch {
			case tt.refused != nil && !errors.As(err, &refused):
				t.Fatalf("Renew() = %v, want a *RefusedError", err)
			case tt.refused != nil:
				if diff := cmp.Diff(tt.refused, refused); diff != "" {
					t.Errorf("RefusedError mismatch (-want +got):\n%s", diff)
				}
			case err == nil || !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Renew() = %v, want an error containing %q", err, tt.wantErr)
			}

			if h.Credential() != before {
				t.Error("failed Renew() replaced the credential")
			}
			fileAfter, _ := os.ReadFile(IdentityFile(h.Dir()))
			if !bytes.Equal(fileBefore, fileAfter) {
				t.Error("failed Renew() replaced identity.pem")
			}
		})
	}
}

func TestHTTPClientFollowsRenewal(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	client := h.HTTPClient()
	whoami := func() string {
		t.Helper()
		resp, err := client.Get(e.url + "/whoami")
		if err != nil {
			t.Fatalf("GET /whoami = %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Errorf("GET /whoami used %s, want HTTP/2", resp.Proto)
		}
		return string(body)
	}

	if got, want := whoami(), h.Credential().Leaf().SerialNumber.String(); got != want {
		t.Errorf("client presented serial %s, want %s", got, want)
	}
	if err := h.Renew(context.Background()); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	if got, want := whoami(), h.Credential().Leaf().SerialNumber.String(); got != want {
		t.Errorf("after Renew() client presented serial %s, want the new %s", got, want)
	}
}

func TestRefreshBundle(t *testing.T) {
	e := newFakeEdge(t)
	other := newFakeEdge(t)
	h := enrollAgent(t, e)
	var changes atomic.Int32
	h.OnChange(func() { changes.Add(1) })

	// An unchanged bundle changes nothing.
	if err := h.RefreshBundle(context.Background()); err != nil {
		t.Fatalf("RefreshBundle() = %v", err)
	}
	if got := changes.Load(); got != 0 {
		t.Errorf("change hook called %d times for an unchanged bundle, want 0", got)
	}

	e.mu.Lock()
	e.extraRoots = []*x509.Certificate{other.ca.Root()}
	e.mu.Unlock()
	if err := h.RefreshBundle(context.Background()); err != nil {
		t.Fatalf("RefreshBundle() = %v", err)
	}
	want := []*x509.Certificate{e.ca.Root(), other.ca.Root()}
	if !sameCertificates(h.Bundle(), want) {
		t.Errorf("Bundle() has %d certificates, want the CA's root and the new one", len(h.Bundle()))
	}
	onDisk, err := certs.ReadCertificates(BundleFile(h.Dir()))
	if err != nil || !sameCertificates(onDisk, want) {
		t.Errorf("ca.pem = %d certificates, %v, want the new bundle", len(onDisk), err)
	}
	if got := changes.Load(); got != 1 {
		t.Errorf("change hook called %d times, want 1", got)
	}
	if _, err := other.ca.Intermediate().Verify(x509.VerifyOptions{Roots: h.Roots()}); err != nil {
		t.Errorf("Roots() does not hold the new root: %v", err)
	}
}

func TestRefreshBundleKeepsBundleOnError(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	before := h.Bundle()
	e.srv.Close()
	if err := h.RefreshBundle(context.Background()); err == nil {
		t.Error("RefreshBundle() with the edge down = nil, want an error")
	}
	if !sameCertificates(h.Bundle(), before) {
		t.Error("failed RefreshBundle() replaced the bundle")
	}
}

func TestTLSConfig(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	c := h.TLSConfig("edge.example", "airlock/1")
	if c.MinVersion != tls.VersionTLS13 || c.ServerName != "edge.example" {
		t.Errorf("TLSConfig() = MinVersion %x ServerName %q, want TLS 1.3 and edge.example", c.MinVersion, c.ServerName)
	}
	if diff := cmp.Diff([]string{"airlock/1"}, c.NextProtos); diff != "" {
		t.Errorf("TLSConfig().NextProtos mismatch (-want +got):\n%s", diff)
	}
	if _, err := e.ca.Intermediate().Verify(x509.VerifyOptions{Roots: c.RootCAs}); err != nil {
		t.Errorf("TLSConfig().RootCAs does not hold the CA's root: %v", err)
	}
	if err := h.Renew(context.Background()); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	got, err := c.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || !got.Leaf.Equal(h.Credential().Leaf()) {
		t.Errorf("GetClientCertificate() of a config made before Renew() = %v, want the renewed certificate", err)
	}
	if h.TLSConfig("x") == c {
		t.Error("TLSConfig() returned the same config twice, want a new one per call")
	}
}
