package assertion

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/pkg/store"
	"github.com/airlockhq/airlock/pkg/token"
)

// edge stands in for an Airlock edge: it publishes a JWKS and signs
// assertions with the same keys.
func edge(t *testing.T) (*token.KeySet, string) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := token.OpenKeySet(st, token.AlgEdDSA, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		data, _ := ks.JWKS()
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return ks, srv.URL
}

func TestRequire(t *testing.T) {
	ks, issuer := edge(t)
	var seen string
	h := Require(NewKeys(issuer), "demo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := Agent(r.Context())
		body, _ := io.ReadAll(r.Body)
		seen = claims.Subject + " " + string(body)
	}))
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`
	sign := func(resource, forBody string) string {
		digest := token.RequestDigest{HTTPMethod: "POST", Method: "tools/call", Name: "echo", BodySHA256: token.BodyDigest([]byte(forBody))}
		raw, err := ks.Sign(token.TypAssertion, token.NewAssertion(issuer, "spiffe://airlock.local/agent/alice", resource, digest, "", time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tests := []struct {
		name, assertion string
		want            int
	}{
		{"valid", sign("demo", body), http.StatusOK},
		{"none", "", http.StatusUnauthorized},
		{"another resource", sign("payroll", body), http.StatusUnauthorized},
		{"another body", sign("demo", body+" "), http.StatusUnauthorized},
	}
	replayed := sign("demo", body)
	tests = append(tests, struct {
		name, assertion string
		want            int
	}{"first use", replayed, http.StatusOK}, struct {
		name, assertion string
		want            int
	}{"replayed", replayed, http.StatusUnauthorized})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = ""
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
			req.Header.Set(token.AssertionHeader, tt.assertion)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusOK && seen != "spiffe://airlock.local/agent/alice "+body {
				t.Errorf("handler saw %q", seen)
			}
			if tt.want != http.StatusOK && seen != "" {
				t.Error("the handler ran for a refused request")
			}
		})
	}
}
