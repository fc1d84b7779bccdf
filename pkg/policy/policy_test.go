package policy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/airlockhq/airlock/internal/policytest"
)

const basePolicy = `package airlock.authz

default allow := false

allow if input.mcp.tool in data.tools[input.agent.name]

deny contains msg if {
	startswith(input.mcp.arguments.path, "/etc")
	msg := sprintf("path %s is off limits", [input.mcp.arguments.path])
}

reason := "tool not granted" if not allow
`

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newEngine(t *testing.T, files map[string]string) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	e, err := New(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return e, dir
}

func input(agent, tool, path string) map[string]any {
	return map[string]any{
		"agent": map[string]any{"name": agent},
		"mcp":   map[string]any{"tool": tool, "arguments": map[string]any{"path": path}},
	}
}

func TestEval(t *testing.T) {
	e, _ := newEngine(t, map[string]string{
		"authz.rego": basePolicy,
		"data.json":  `{"tools": {"alice": ["read_file", "echo"]}}`,
		// Loaded for the tests that guard reloads, never for decisions:
		// its rule would otherwise join the package.
		"authz_test.rego": "package airlock.authz\n\ntest_alice_has_echo if \"echo\" in data.tools.alice\n\nallow if true\n",
	})
	tests := []struct {
		name        string
		in          map[string]any
		wantAllowed bool
		wantMsg     string
	}{
		{"granted tool", input("alice", "read_file", "/srv/a"), true, ""},
		{"tool not granted", input("alice", "delete", "/srv/a"), false, "tool not granted"},
		{"unknown agent", input("bob", "echo", ""), false, "tool not granted"},
		{"deny overrides allow", input("alice", "read_file", "/etc/passwd"), false, "path /etc/passwd is off limits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Eval(t.Context(), tt.in)
			if err != nil {
				t.Fatalf("Eval() = %v", err)
			}
			if d.Allowed() != tt.wantAllowed || (!tt.wantAllowed && d.Message() != tt.wantMsg) {
				t.Errorf("Eval() = %+v (message %q), want allowed %v, message %q", d, d.Message(), tt.wantAllowed, tt.wantMsg)
			}
			if d.Revision == "" || d.Revision != e.Revision() {
				t.Errorf("revision %q, engine at %q", d.Revision, e.Revision())
			}
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax error", map[string]string{"authz.rego": "package airlock.authz\n\nallow if {\n"}, "authz.rego:"},
		{"no airlock package", map[string]string{"other.rego": "package other\n\nx := 1\n"}, "package airlock.authz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			e, err := New(t.Context(), dir, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() = %v, want an error containing %q", err, tt.want)
			}
			if _, err := e.Eval(t.Context(), input("alice", "echo", "")); !errors.Is(err, ErrNoPolicy) {
				t.Errorf("Eval() without a policy = %v, want ErrNoPolicy", err)
			}
		})
	}
	if _, err := New(t.Context(), filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Error("New() of a missing folder succeeded")
	}
}

func TestEvalTypeErrors(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"authz.rego": "package airlock.authz\n\nallow := \"yes\"\n"})
	if _, err := e.Eval(t.Context(), input("alice", "echo", "")); err == nil || !strings.Contains(err.Error(), "want a boolean") {
		t.Errorf("Eval() with a string allow = %v", err)
	}
	e, _ = newEngine(t, map[string]string{"authz.rego": "package airlock.authz\n\nallow if 1 / input.zero == 1\n"})
	if _, err := e.Eval(t.Context(), map[string]any{"zero": 0}); err == nil {
		t.Error("Eval() of a failing expression returned no error")
	}
}

// TestEvalLazyInput checks that the input, converted only where a rule
// reads it, reads the same as a whole document: iterated, compared,
// counted, with numbers and nested lists, and that a value JSON cannot
// hold is an error rather than a crash.
func TestEvalLazyInput(t *testing.T) {
	e, _ := newEngine(t, map[string]string{"authz.rego": `package airlock.authz

default allow := false

allow if {
	input.mcp == {"tool": "echo", "arguments": {"n": 3, "tags": ["a", "b"]}}
	count(input) == 2
	some k, v in input.mcp.arguments
	k == "n"
	v > 2
	walk(input, [["mcp", "arguments", "tags", 1], "b"])
}
`})
	in := func(n any) map[string]any {
		return map[string]any{
			"agent": map[string]any{"name": "alice"},
			"mcp": map[string]any{"tool": "echo", "arguments": map[string]any{
				"n": n, "tags": []any{"a", "b"},
			}},
		}
	}
	for _, tt := range []struct {
		n    any
		want bool
	}{{int64(3), true}, {float64(3), true}, {json.Number("3"), true}, {2, false}} {
		d, err := e.Eval(t.Context(), in(tt.n))
		if err != nil || d.Allowed() != tt.want {
			t.Errorf("Eval(n = %v %T) = %+v, %v, want allowed %v", tt.n, tt.n, d, err, tt.want)
		}
	}
	_, err := e.Eval(t.Context(), in(make(chan int)))
	if err == nil || !strings.Contains(err.Error(), "encoding policy input") {
		t.Errorf("Eval() of an input with a channel = %v, want an encoding error", err)
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	e, dir := newEngine(t, map[string]string{
		"authz.rego": basePolicy,
		"data.json":  `{"tools": {"alice": ["echo"]}}`,
	})
	good := e.Revision()
	writeFiles(t, dir, map[string]string{"authz.rego": "package airlock.authz\n\nallow if {\n"})
	if err := e.Reload(t.Context()); err == nil {
		t.Fatal("Reload() of a broken policy succeeded")
	}
	if e.Revision() != good || e.Err() == nil {
		t.Errorf("after a failed reload: revision %q (want %q), Err %v", e.Revision(), good, e.Err())
	}
	if d, err := e.Eval(t.Context(), input("alice", "echo", "")); err != nil || !d.Allowed() {
		t.Errorf("the last good policy stopped deciding: %+v, %v", d, err)
	}
}

func TestWatch(t *testing.T) {
	e, dir := newEngine(t, map[string]string{
		"authz.rego": basePolicy,
		"data.json":  `{"tools": {"alice": []}}`,
	})
	reloaded := make(chan error, 4)
	e.OnReload = func(_ string, err error) { reloaded <- err }
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go e.Watch(ctx, 10*time.Millisecond)

	writeFiles(t, dir, map[string]string{"data.json": `{"tools": {"alice": ["echo"]}}`})
	if err := <-reloaded; err != nil {
		t.Fatalf("reload after a data change = %v", err)
	}
	if d, _ := e.Eval(t.Context(), input("alice", "echo", "")); !d.Allowed() {
		t.Error("the data change did not take effect")
	}
	writeFiles(t, dir, map[string]string{"authz.rego": "package airlock.authz\n\nallow if {\n"})
	if err := <-reloaded; err == nil {
		t.Fatal("a broken policy reloaded without error")
	}
	if d, _ := e.Eval(t.Context(), input("alice", "echo", "")); !d.Allowed() {
		t.Error("a broken reload replaced the last good policy")
	}
}

func TestExamplePolicy(t *testing.T) {
	var out strings.Builder
	passed, failed, err := Test(t.Context(), "../../examples/policy", &out, false)
	if err != nil || failed != 0 || passed < 5 {
		t.Fatalf("Test(examples/policy) = %d passed, %d failed, %v\n%s", passed, failed, err, out.String())
	}
}

func TestTestReportsFailures(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"authz.rego":      "package airlock.authz\n\nallow := true\n",
		"authz_test.rego": "package airlock.authz_test\n\nimport data.airlock.authz\n\ntest_ok if authz.allow\n\ntest_wrong if not authz.allow\n",
	})
	var out strings.Builder
	passed, failed, err := Test(t.Context(), dir, &out, false)
	if err != nil || passed != 1 || failed != 1 || !strings.Contains(out.String(), "test_wrong") {
		t.Errorf("Test() = %d passed, %d failed, %v\n%s", passed, failed, err, out.String())
	}
}

func TestExplain(t *testing.T) {
	e, err := New(t.Context(), "../../examples/policy", nil)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{
		"agent": map[string]any{"name": "dev-agent", "token": map[string]any{"scopes": []any{"mcp:demo"}}},
		"mcp": map[string]any{"kind": "request", "method": "tools/call", "tool": "read_file",
			"arguments": map[string]any{"path": "private/plan.txt"}},
	}
	x, err := e.Explain(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if x.Allowed || !strings.Contains(x.Decision.Message(), "only read files under public/") {
		t.Errorf("Explain() = %+v", x)
	}
	joined := strings.Join(x.Rules, "\n")
	if !strings.Contains(joined, "deny at") || !strings.Contains(joined, "allow at") {
		t.Errorf("Explain() rules = %v, want the allow and deny rules that fired", x.Rules)
	}
}

func TestBundle(t *testing.T) {
	var buf bytes.Buffer
	b := bundle.Bundle{
		Data: map[string]any{"grants": map[string]any{"tools": map[string]any{"alice": []any{"echo"}}}},
		Modules: []bundle.ModuleFile{{
			URL:  "/authz.rego",
			Path: "/authz.rego",
			Raw:  []byte("package airlock.authz\n\nallow if input.mcp.tool in data.grants.tools[input.agent.name]\n"),
		}},
	}
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := New(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("New(bundle) = %v", err)
	}
	if d, err := e.Eval(t.Context(), input("alice", "echo", "")); err != nil || !d.Allowed() {
		t.Errorf("Eval() from a bundle = %+v, %v", d, err)
	}
	if d, _ := e.Eval(t.Context(), input("bob", "echo", "")); d.Allowed() {
		t.Error("the bundle's policy allowed bob")
	}
}

func TestReloadRefusesFailingTests(t *testing.T) {
	e, dir := newEngine(t, map[string]string{
		"authz.rego":      basePolicy,
		"data.json":       `{"tools": {"alice": ["echo"]}}`,
		"authz_test.rego": "package airlock.authz_test\n\nimport data.airlock.authz\n\ntest_alice_echo if authz.allow with input as {\"agent\": {\"name\": \"alice\"}, \"mcp\": {\"tool\": \"echo\", \"arguments\": {}}}\n",
	})
	good := e.Revision()
	// Data that breaks the policy's own test: refused, the last good stays.
	writeFiles(t, dir, map[string]string{"data.json": `{"tools": {"alice": []}}`})
	err := e.Reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "fails 1 of its own tests") {
		t.Fatalf("Reload() = %v, want refused for a failing test", err)
	}
	if e.Revision() != good {
		t.Error("a policy failing its tests replaced the last good one")
	}
}

// signedBundle returns a bundle whose policy allows tool, signed with key.
func signedBundle(t *testing.T, tool string, key *rsa.PrivateKey) []byte {
	return policytest.SignedBundle(t, "package airlock.authz\n\nallow if input.mcp.tool == \""+tool+"\"\n", key)
}

func TestFetchSignedBundle(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))

	var served atomic.Value
	served.Store(signedBundle(t, "echo", key))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(served.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	dest := filepath.Join(t.TempDir(), "bundle.tar.gz")
	f := &Fetcher{URL: srv.URL, PublicKey: pubPEM, Dest: dest}

	if err := f.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch() = %v", err)
	}
	e, err := New(t.Context(), dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Eval(t.Context(), input("alice", "echo", "")); !d.Allowed() {
		t.Error("the fetched bundle's policy does not allow echo")
	}

	// A bundle signed by another key is refused; the good one stays.
	served.Store(signedBundle(t, "anything", other))
	if err := f.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "verifying policy bundle") {
		t.Fatalf("Fetch() of a foreign-signed bundle = %v", err)
	}
	if err := e.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Eval(t.Context(), input("alice", "anything", "")); d.Allowed() {
		t.Error("a bundle with a foreign signature took effect")
	}
}
