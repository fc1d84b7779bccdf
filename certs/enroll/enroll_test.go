package enroll

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockhq/airlock/certs"
)

func TestEnrollWithPin(t *testing.T) {
	e := newFakeEdge(t)
	opts := e.options(t)
	opts.Name = "" // accept the token's name
	h, err := Enroll(context.Background(), opts)
	if err != nil {
		t.Fatalf("Enroll() = %v", err)
	}

	want := "spiffe://airlock.local/agent/ci"
	if got := h.Identity().String(); got != want {
		t.Errorf("Identity() = %s, want %s", got, want)
	}
	if h.EdgeURL() != e.url || h.Dir() != opts.Dir {
		t.Errorf("EdgeURL(), Dir() = %s, %s, want %s, %s", h.EdgeURL(), h.Dir(), e.url, opts.Dir)
	}
	if posts, gets := e.counts(); posts != 1 || gets != 1 {
		t.Errorf("edge saw %d POSTs and %d GETs, want 1 and 1", posts, gets)
	}
	checkModes(t, opts.Dir, map[string]os.FileMode{
		".": 0o700, "identity.pem": 0o600, "ca.pem": 0o644, "enrollment.json": 0o644,
	})

	var rec map[string]string
	data, _ := os.ReadFile(EnrollmentFile(opts.Dir))
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("reading enrollment.json: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"edge_url": e.url, "identity": want}, rec); diff != "" {
		t.Errorf("enrollment.json mismatch (-want +got):\n%s", diff)
	}
}

func TestEnrollIdentityFile(t *testing.T) {
	e := newFakeEdge(t)
	h := enrollAgent(t, e)
	data, err := os.ReadFile(IdentityFile(h.Dir()))
	if err != nil {
		t.Fatal(err)
	}

	// The key comes first, then the chain leaf first; curl and crypto/tls
	// both take the one file as certificate and key.
	var types []string
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		types = append(types, block.Type)
	}
	want := []string{"PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("PEM blocks of identity.pem mismatch (-want +got):\n%s", diff)
	}
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		t.Fatalf("tls.X509KeyPair(identity.pem) = %v", err)
	}
	if !pair.Leaf.Equal(h.Credential().Leaf()) {
		t.Error("identity.pem holds another certificate than Credential()")
	}
	if got := h.Bundle(); len(got) != 1 || !got[0].Equal(e.ca.Root()) {
		t.Errorf("Bundle() = %d certificates, want the CA's root", len(got))
	}
}

func TestEnrollWithCAFile(t *testing.T) {
	e := newFakeEdge(t)
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := certs.WriteCertificates(caFile, e.ca.Root()); err != nil {
		t.Fatal(err)
	}
	opts := e.options(t)
	opts.CAFile = caFile
	// A pin that matches nothing: with a CA file it is not checked.
	opts.Token = JoinToken{ID: e.token.ID, Secret: e.token.Secret, Pin: "AAAA"}.String()
	e.token.Pin = "AAAA"

	h, err := Enroll(context.Background(), opts)
	if err != nil {
		t.Fatalf("Enroll() with a CA file = %v", err)
	}
	if h.Identity().Name != "ci" {
		t.Errorf("Identity() = %s, want name ci", h.Identity())
	}
	if posts, gets := e.counts(); posts != 1 || gets != 0 {
		t.Errorf("edge saw %d POSTs and %d GETs, want 1 and 0", posts, gets)
	}
}

func TestEnrollRefusesWrongEdge(t *testing.T) {
	genuine := newFakeEdge(t)
	tests := []struct {
		name    string
		edge    func(t *testing.T) *fakeEdge
		wantErr string
	}{
		{
			name:    "bundle without the pinned root",
			edge:    func(t *testing.T) *fakeEdge { return newFakeEdge(t) },
			wantErr: "does not match the join token's pin: refusing to enroll (is this the right edge?)",
		},
		{
			// An unverified bundle may carry the pinned root next to the
			// attacker's own: only the pinned root may authenticate.
			name: "pinned root added to another CA's bundle",
			edge: func(t *testing.T) *fakeEdge {
				e := newFakeEdge(t)
				e.extraRoots = append(e.extraRoots, genuine.ca.Root())
				return e
			},
			wantErr: "certificate signed by unknown authority",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.edge(t)
			opts := e.options(t)
			opts.Token = genuine.token.String()
			_, err := Enroll(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Enroll() = %v, want an error containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "enrolling with "+e.url+": ") {
				t.Errorf("Enroll() = %q, want it to start with the action", err)
			}
			if posts, _ := e.counts(); posts != 0 {
				t.Errorf("edge saw %d POSTs, want none before the edge is authenticated", posts)
			}
			checkNoFiles(t, opts.Dir)
		})
	}
}

func TestEnrollRefused(t *testing.T) {
	tests := []struct {
		name   string
		refuse *fakeRefusal
		token  func(JoinToken) JoinToken
		want   RefusedError
	}{
		{
			name:   "edge refusal",
			refuse: &fakeRefusal{http.StatusUnauthorized, `{"error":"invalid_token","error_description":"join token tok1 has already been used","request_id":"r-7"}`},
			want:   RefusedError{Status: 401, Code: CodeInvalidToken, Description: "join token tok1 has already been used", RequestID: "r-7"},
		},
		{
			name:  "unknown token",
			token: func(tok JoinToken) JoinToken { tok.Secret = "wrong"; return tok },
			want:  RefusedError{Status: 401, Code: CodeInvalidToken, Description: "join token is unknown", RequestID: "req-1"},
		},
		{
			name:   "not JSON",
			refuse: &fakeRefusal{http.StatusBadGateway, "<html>\n  <h1>502 Bad Gateway</h1>\n</html>\n"},
			want:   RefusedError{Status: 502, Description: "<html> <h1>502 Bad Gateway</h1> </html>"},
		},
		{
			name:   "empty",
			refuse: &fakeRefusal{http.StatusServiceUnavailable, ""},
			want:   RefusedError{Status: 503, Description: "empty answer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEdge(t)
			e.refuse = tt.refuse
			opts := e.options(t)
			if tt.token != nil {
				opts.Token = tt.token(e.token).String()
			}
			_, err := Enroll(context.Background(), opts)
			var refused *RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("Enroll() = %v, want a *RefusedError", err)
			}
			if diff := cmp.Diff(tt.want, *refused); diff != "" {
				t.Errorf("RefusedError mismatch (-want +got):\n%s", diff)
			}
			checkNoFiles(t, opts.Dir)
		})
	}
}

func TestEnrollChecksAnswer(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*fakeEdge)
		wantErr string
	}{
		{"another kind", func(e *fakeEdge) { e.signKind = certs.KindConnector }, "want kind agent"},
		{"another name", func(e *fakeEdge) { e.signName = "other" }, `want the name "ci"`},
		{"another key", func(e *fakeEdge) { e.foreignKey = true }, "not for the key we sent"},
		{"another CA", func(e *fakeEdge) { e.signer = newFakeEdge(t).ca }, "certificate signed by unknown authority"},
		{
			name:    "answer names another identity",
			edit:    func(e *fakeEdge) { e.answerID = "spiffe://airlock.local/agent/other" },
			wantErr: `answer names identity "spiffe://airlock.local/agent/other" but the certificate asserts spiffe://airlock.local/agent/ci`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEdge(t)
			tt.edit(e)
			opts := e.options(t)
			_, err := Enroll(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Enroll() = %v, want an error containing %q", err, tt.wantErr)
			}
			checkNoFiles(t, opts.Dir)
		})
	}
}

func TestEnrollChecksOptions(t *testing.T) {
	e := newFakeEdge(t)
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{"malformed token", func(o *Options) { o.Token = "airlock-join-v1.a.b" }, ErrMalformedToken.Error()},
		{"no token", func(o *Options) { o.Token = "" }, "no join token"},
		{"http edge", func(o *Options) { o.EdgeURL = "http://127.0.0.1:1" }, "not of the form https://host:port"},
		{"admin kind", func(o *Options) { o.Kind = certs.KindAdmin }, `cannot enroll as kind "admin"`},
		{"bad name", func(o *Options) { o.Name = "CI" }, `invalid name "CI"`},
		{"no folder", func(o *Options) { o.Dir = "" }, "no folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := e.options(t)
			tt.edit(&opts)
			_, err := Enroll(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Enroll() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if posts, gets := e.counts(); posts != 0 || gets != 0 {
		t.Errorf("edge saw %d POSTs and %d GETs, want none", posts, gets)
	}

	opts := e.options(t)
	opts.Token = "airlock-join-v1.a.b"
	if _, err := Enroll(context.Background(), opts); !errors.Is(err, ErrMalformedToken) {
		t.Errorf("Enroll() with a malformed token = %v, want ErrMalformedToken", err)
	}
}

// checkModes checks the permission bits of files in dir.
func checkModes(t *testing.T, dir string, want map[string]os.FileMode) {
	t.Helper()
	for name, perm := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if got := fi.Mode().Perm(); got != perm {
			t.Errorf("%s has mode %v, want %v", name, got, perm)
		}
	}
}

// checkNoFiles checks that a failed enrollment left no credential.
func checkNoFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) > 0 {
		t.Errorf("failed Enroll() left %d files in %s, want none", len(entries), dir)
	}
}
