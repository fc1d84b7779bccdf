package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// BenchmarkDecision is the edge's decision path for one tools/call without
// plugins: strict parse of the body, the input document, the example
// policy with a data document of 1,000 agents, and the audit record
// written to a file. Target: p50 under 50 µs.
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
	for b.Loop() {
		m, err := mcp.Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		var params map[string]any
		json.Unmarshal(m.Params, &params)
		input := map[string]any{
			"agent": map[string]any{"name": "agent-500", "token": map[string]any{"scopes": []any{"mcp:demo"}}},
			"mcp": map[string]any{"kind": "request", "method": m.Method, "tool": m.Name,
				"arguments": params["arguments"], "params": params, "listing": false},
		}
		d, err := e.Eval(b.Context(), input)
		if err != nil || !d.Allowed() {
			b.Fatalf("Eval() = %+v, %v", d, err)
		}
		rec := audit.Record{Time: time.Now(), RequestID: "r", Agent: "agent-500", Method: m.Method,
			Target: m.Name, Decision: "allow", PolicyRevision: d.Revision}
		if err := log.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
}
