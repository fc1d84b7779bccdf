package audit

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteRedactTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, []string{"password", "Token"})
	if err != nil {
		t.Fatal(err)
	}
	for i, args := range []map[string]any{
		{"user": "alice", "password": "hunter2"},
		{"nested": map[string]any{"TOKEN": "abc", "list": []any{map[string]any{"token": "x", "ok": 1}}}},
		nil,
	} {
		rec := Record{Time: time.Unix(int64(i), 0), RequestID: string(rune('a' + i)), Decision: "allow", Arguments: args}
		if err := l.Write(rec); err != nil {
			t.Fatalf("Write() = %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	all, next, err := Tail(path, 0)
	if err != nil || len(all) != 3 || next == 0 {
		t.Fatalf("Tail(0) = %d records, next %d, %v", len(all), next, err)
	}
	if all[0].Arguments["password"] != Redacted || all[0].Arguments["user"] != "alice" {
		t.Errorf("first record's arguments = %v", all[0].Arguments)
	}
	nested := all[1].Arguments["nested"].(map[string]any)
	if nested["TOKEN"] != Redacted || !strings.Contains(toString(nested["list"]), Redacted) {
		t.Errorf("nested arguments = %v, want tokens redacted at every depth", nested)
	}
	last, _, _ := Tail(path, -1)
	if len(last) != 1 || last[0].RequestID != "c" {
		t.Errorf("Tail(-1) = %+v", last)
	}
	none, again, _ := Tail(path, next)
	if len(none) != 0 || again != next {
		t.Errorf("Tail(next) = %d records, %d", len(none), again)
	}
}

func toString(v any) string {
	var b strings.Builder
	for _, e := range v.([]any) {
		for k, x := range e.(map[string]any) {
			b.WriteString(k + "=" + strings.TrimSpace(func() string { s, _ := x.(string); return s }()) + " ")
		}
	}
	return b.String()
}

func TestWriteFailure(t *testing.T) {
	l, err := Open("/dev/full", nil)
	if err != nil {
		t.Skipf("no /dev/full here: %v", err)
	}
	defer l.Close()
	if err := l.Write(Record{RequestID: "x"}); err == nil {
		t.Error("Write() to a full device succeeded")
	}
}
