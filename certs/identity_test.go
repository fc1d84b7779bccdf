package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseIdentity(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		in   string
		want Identity
	}{
		{"agent", "spiffe://airlock.local/agent/ci", Identity{"airlock.local", KindAgent, "ci"}},
		{"connector", "spiffe://airlock.local/connector/db-1", Identity{"airlock.local", KindConnector, "db-1"}},
		{"edge", "spiffe://example.org/edge/eu.west_1", Identity{"example.org", KindEdge, "eu.west_1"}},
		{"admin", "spiffe://airlock.local/admin/alice", Identity{"airlock.local", KindAdmin, "alice"}},
		{"one character name", "spiffe://airlock.local/agent/x", Identity{"airlock.local", KindAgent, "x"}},
		{"64 character name", "spiffe://airlock.local/agent/" + long, Identity{"airlock.local", KindAgent, long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if err != nil {
				t.Fatalf("ParseIdentity(%q) = %v, want nil error", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseIdentity(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("ParseIdentity(%q).String() = %q, want the input back", tt.in, s)
			}
		})
	}
}

func TestParseIdentityRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"https scheme", "https://airlock.local/agent/ci"},
		{"spire scheme", "spire://airlock.local/agent/ci"},
		{"no scheme", "airlock.local/agent/ci"},
		{"opaque", "spiffe:airlock.local/agent/ci"},
		{"empty domain", "spiffe:///agent/ci"},
		{"extra path segment", "spiffe://airlock.local/agent/ci/extra"},
		{"trailing slash", "spiffe://airlock.local/agent/ci/"},
		{"empty first segment", "spiffe://airlock.local//agent/ci"},
		{"kind only", "spiffe://airlock.local/agent"},
		{"empty name", "spiffe://airlock.local/agent/"},
		{"no path", "spiffe://airlock.local"},
		{"unknown kind", "spiffe://airlock.local/robot/ci"},
		{"uppercase kind", "spiffe://airlock.local/Agent/ci"},
		{"uppercase name", "spiffe://airlock.local/agent/CI"},
		{"name starts with dash", "spiffe://airlock.local/agent/-ci"},
		{"name ends with dot", "spiffe://airlock.local/agent/ci."},
		{"name with space", "spiffe://airlock.local/agent/c%20i"},
		{"encoded slash in name", "spiffe://airlock.local/agent/a%2Fb"},
		{"65 character name", "spiffe://airlock.local/agent/" + strings.Repeat("a", 65)},
		{"query", "spiffe://airlock.local/agent/ci?x=1"},
		{"empty query", "spiffe://airlock.local/agent/ci?"},
		{"fragment", "spiffe://airlock.local/agent/ci#frag"},
		{"port", "spiffe://airlock.local:8443/agent/ci"},
		{"userinfo", "spiffe://user@airlock.local/agent/ci"},
		{"userinfo with password", "spiffe://user:pw@airlock.local/agent/ci"},
		{"bad escape", "spiffe://airlock.local/agent/c%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if err == nil {
				t.Fatalf("ParseIdentity(%q) = %v, want an error", tt.in, got)
			}
			if got != (Identity{}) {
				t.Errorf("ParseIdentity(%q) returned %+v with its error, want the zero Identity", tt.in, got)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range []Kind{KindAgent, KindConnector, KindEdge, KindAdmin} {
		got, err := ParseKind(string(k))
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v, want %q, nil", k, got, err, k)
		}
	}
	for _, s := range []string{"", "Agent", "AGENT", "robot", "agents", " agent"} {
		got, err := ParseKind(s)
		if err == nil {
			t.Errorf("ParseKind(%q) = %q, want an error", s, got)
			continue
		}
		for _, want := range []string{"agent", "connector", "edge", "admin"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseKind(%q) error %q does not name the valid kind %q", s, err, want)
			}
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"a", true},
		{"ci", true},
		{"db-1.prod_eu", true},
		{"0", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"A", false},
		{"ci-", false},
		{"_ci", false},
		{".ci", false},
		{"c i", false},
		{"c/i", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewIdentity(t *testing.T) {
	tests := []struct {
		name   string
		domain string
		kind   Kind
		id     string
		// wantErrs are substrings the error must hold; none means valid.
		wantErrs []string
	}{
		{name: "valid", domain: "airlock.local", kind: KindAgent, id: "ci"},
		{name: "empty domain", domain: "", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "domain with port", domain: "airlock.local:1", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "domain with path", domain: "airlock.local/x", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "domain with userinfo", domain: "u@airlock.local", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "domain with query", domain: "airlock.local?", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "domain with fragment", domain: "airlock.local#", kind: KindAgent, id: "ci", wantErrs: []string{"trust domain"}},
		{name: "empty kind", domain: "airlock.local", kind: "", id: "ci", wantErrs: []string{"kind"}},
		{name: "bad name", domain: "airlock.local", kind: KindEdge, id: "Edge", wantErrs: []string{"invalid name"}},
		{
			name:     "every part wrong",
			domain:   "",
			kind:     "robot",
			id:       "",
			wantErrs: []string{"trust domain", "kind", "invalid name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewIdentity(tt.domain, tt.kind, tt.id)
			if len(tt.wantErrs) == 0 {
				want := Identity{tt.domain, tt.kind, tt.id}
				if err != nil || got != want {
					t.Fatalf("NewIdentity(%q, %q, %q) = %v, %v, want %v, nil", tt.domain, tt.kind, tt.id, got, err, want)
				}
				if verr := got.Validate(); verr != nil {
					t.Errorf("Identity(%v).Validate() = %v, want nil", got, verr)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewIdentity(%q, %q, %q) = %v, want an error", tt.domain, tt.kind, tt.id, got)
			}
			if got != (Identity{}) {
				t.Errorf("NewIdentity(%q, %q, %q) returned %+v with its error, want the zero Identity", tt.domain, tt.kind, tt.id, got)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewIdentity(%q, %q, %q) error %q does not mention %q", tt.domain, tt.kind, tt.id, err, want)
				}
			}
		})
	}
}

func TestIdentityValidateZero(t *testing.T) {
	if err := (Identity{}).Validate(); err == nil {
		t.Error("Identity{}.Validate() = nil, want an error")
	}
}

func TestIdentityURI(t *testing.T) {
	id := Identity{Domain: "airlock.local", Kind: KindConnector, Name: "db"}
	u := id.URI()
	want := &url.URL{Scheme: "spiffe", Host: "airlock.local", Path: "/connector/db"}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("Identity(%v).URI() mismatch (-want +got):\n%s", id, diff)
	}
	if got, want := id.String(), "spiffe://airlock.local/connector/db"; got != want {
		t.Errorf("Identity.String() = %q, want %q", got, want)
	}
}

func TestIdentityOf(t *testing.T) {
	agent := mustURL(t, "spiffe://airlock.local/agent/ci")
	conn := mustURL(t, "spiffe://airlock.local/connector/db")
	web := mustURL(t, "https://example.com/agent/ci")
	tests := []struct {
		name    string
		uris    []*url.URL
		want    Identity
		wantErr error // checked with errors.Is when not nil
		anyErr  bool
	}{
		{name: "none", uris: nil, wantErr: ErrNoIdentity},
		{name: "only other schemes", uris: []*url.URL{web}, wantErr: ErrNoIdentity},
		{name: "one", uris: []*url.URL{agent}, want: Identity{"airlock.local", KindAgent, "ci"}},
		{name: "one among others", uris: []*url.URL{web, conn}, want: Identity{"airlock.local", KindConnector, "db"}},
		{name: "two", uris: []*url.URL{agent, conn}, anyErr: true},
		{name: "same one twice", uris: []*url.URL{agent, agent}, anyErr: true},
		{name: "malformed", uris: []*url.URL{mustURL(t, "spiffe://airlock.local/agent/ci/x")}, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IdentityOf(&x509.Certificate{URIs: tt.uris})
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("IdentityOf(%v) = %v, %v, want error %v", tt.uris, got, err, tt.wantErr)
				}
			case tt.anyErr:
				if err == nil || errors.Is(err, ErrNoIdentity) {
					t.Errorf("IdentityOf(%v) = %v, %v, want an error other than ErrNoIdentity", tt.uris, got, err)
				}
			default:
				if err != nil || got != tt.want {
					t.Errorf("IdentityOf(%v) = %v, %v, want %v, nil", tt.uris, got, err, tt.want)
				}
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	cert := &x509.Certificate{Raw: []byte("not really DER")}
	sum := sha256.Sum256(cert.Raw)
	want := hex.EncodeToString(sum[:])
	if got := Fingerprint(cert); got != want {
		t.Errorf("Fingerprint() = %q, want %q", got, want)
	}
	if got := Fingerprint(cert); len(got) != 64 || strings.ToLower(got) != got {
		t.Errorf("Fingerprint() = %q, want 64 lowercase hex digits", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q) = %v", s, err)
	}
	return u
}
