package token

import (
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	s, err := ParseScope("mcp:demo mcp:files:resources/read:file:///a:b mcp:demo mcp:hr:tools/call", nil)
	if err != nil {
		t.Fatalf("ParseScope() = %v", err)
	}
	want := "mcp:demo mcp:files:resources/read:file:///a:b mcp:hr:tools/call"
	if s.String() != want {
		t.Errorf("ParseScope().String() = %q, want %q (duplicates dropped)", s, want)
	}
	if s[1].Name != "file:///a:b" {
		t.Errorf("name = %q, want the URI whole", s[1].Name)
	}
}

func TestParseScopeRefuses(t *testing.T) {
	known := func(r string) bool { return r == "demo" }
	tests := []struct{ in, want string }{
		{"", "names nothing"},
		{"openid", `does not start with "mcp:"`},
		{"mcp:", "empty part"},
		{"mcp:demo:", "empty part"},
		{"mcp:demo::x", "empty part"},
		{"mcp:demo:tools/call:", "empty part"},
		{"mcp:payroll", "does not serve"},
	}
	for _, tt := range tests {
		if _, err := ParseScope(tt.in, known); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseScope(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestScopeAllows(t *testing.T) {
	s, _ := ParseScope("mcp:demo:tools/call:read_note mcp:files:resources/read mcp:wiki", nil)
	tests := []struct {
		resource, method, name string
		want                   bool
	}{
		{"demo", "tools/call", "read_note", true},
		{"demo", "tools/call", "add_note", false},
		{"demo", "initialize", "", true},
		{"demo", "tools/list", "", true},
		{"demo", "notifications/initialized", "", true},
		{"demo", "", "", true}, // a response to the server
		{"demo", "prompts/get", "p", false},
		{"demo", "logging/setLevel", "", false},
		{"files", "resources/read", "file:///etc/passwd", true},
		{"files", "tools/call", "x", false},
		{"wiki", "tools/call", "anything", true},
		{"payroll", "initialize", "", false},
		{"payroll", "tools/call", "pay", false},
	}
	for _, tt := range tests {
		if got := s.Allows(tt.resource, tt.method, tt.name); got != tt.want {
			t.Errorf("Allows(%s, %s, %s) = %v, want %v", tt.resource, tt.method, tt.name, got, tt.want)
		}
	}
}

func TestScopeCovers(t *testing.T) {
	wide, _ := ParseScope("mcp:demo mcp:files:resources/read", nil)
	tests := []struct {
		narrow string
		want   bool
	}{
		{"mcp:demo", true},
		{"mcp:demo:tools/call:read_note", true},
		{"mcp:files:resources/read:file:///a", true},
		{"mcp:files:resources/read", true},
		{"mcp:files", false},
		{"mcp:files:tools/call", false},
		{"mcp:demo mcp:payroll", false},
	}
	for _, tt := range tests {
		n, _ := ParseScope(tt.narrow, nil)
		if got := wide.Covers(n); got != tt.want {
			t.Errorf("Covers(%q) = %v, want %v", tt.narrow, got, tt.want)
		}
	}
}

func TestNeeded(t *testing.T) {
	if got := Needed("demo", "tools/call", "read_file"); got != "mcp:demo:tools/call:read_file" {
		t.Errorf("Needed(tools/call) = %q", got)
	}
	if got := Needed("demo", "logging/setLevel", ""); got != "mcp:demo:logging/setLevel" {
		t.Errorf("Needed(logging/setLevel) = %q", got)
	}
	if got := Needed("demo", "tools/list", ""); got != "mcp:demo" {
		t.Errorf("Needed(tools/list) = %q", got)
	}
}
