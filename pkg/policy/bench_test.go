package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockhq/airlock/internal/latency"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// BenchmarkDecision is the edge's decision path for one tools/call without
// plugins: strict parse of the body, the input document, the example
// policy with a data document of 1,000 agents, and the audit record
// written to a file. Target: p50 under 50 µs (the p50-µs column).
func BenchmarkDecision(b *testing.B) {
	dir := b.TempDir()
	for _, name := range []string{"authz.rego"} {
		data, err := os.ReadFile(filepath.Join("../../examples/policy", name))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	tools := map[string]any{}
	for i := range 1000 {
		tools[fmt.Sprintf("agent-%d", i)] = []string{"echo", "read_file", "search", "add_note"}
	}
	grants, _ := json.Marshal(map[string]any{"grants": map[string]any{"tools": tools}})
	os.WriteFile(filepath.Join(dir, "data.json"), grants, 0o644)
	e, err := New(b.Context(), dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	log, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"), audit.DefaultRedact)
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"public/a.txt"}}}`)

	b.ReportAllocs()
	var samples latency.Samples
	for b.Loop() {
		samples.Time(func() { decideOnce(b, e, log, body) })
	}
	samples.Report(b)
}

// decideOnce is one pass of the decision path.
// The input has the whole shape the edge builds (docs/policy.md).
func decideOnce(b *testing.B, e *Engine, log *audit.Log, body []byte) {
	m, err := mcp.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	var params map[string]any
	json.Unmarshal(m.Params, &params)
	now := time.Now().UTC()
	input := map[string]any{
		"version": 1,
		"agent": map[string]any{
			"id": "agent/agent-500", "name": "agent-500",
			"certificate": map[string]any{
				"serial": "1234567890", "fingerprint": "sha256:abcdef0123456789",
				"not_after": "2026-12-04T10:00:00Z",
			},
			"token": map[string]any{
				"jti": "tok-1", "scope": "mcp:demo", "scopes": []any{"mcp:demo"},
				"expires": now.Unix() + 300, "issued": now.Unix(),
			},
		},
		"resource": map[string]any{
			"name": "demo", "connector": "c1", "connectors": []string{"c1"},
		},
		"mcp": map[string]any{
			"version": "2025-11-25", "session": "s-1", "kind": "request", "id": 7,
			"method": m.Method, "tool": m.Name, "arguments": params["arguments"],
			"params": params, "listing": false, "direction": "client_to_server",
		},
		"http": map[string]any{
			"method": "POST", "path": "/mcp/demo", "remote_addr": "127.0.0.1:50000",
			"headers": map[string]any{"user-agent": "bench"},
		},
		"time":    map[string]any{"now": now.Format(time.RFC3339Nano), "unix": now.Unix()},
		"context": map[string]any{},
	}
	d, err := e.Eval(b.Context(), input)
	if err != nil || !d.Allowed() {
		b.Fatalf("Eval() = %+v, %v", d, err)
	}
	rec := audit.Record{Time: now, RequestID: "r", Agent: "agent/agent-500", Method: m.Method,
		Target: m.Name, Decision: "allow", PolicyRevision: d.Revision,
		Arguments: params["arguments"].(map[string]any)}
	if err := log.Write(rec); err != nil {
		b.Fatal(err)
	}
}
