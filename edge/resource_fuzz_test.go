package edge

import (
	"net/url"
	"testing"
)

// FuzzResourcePath parses request targets the way the HTTP server does
// and checks that every one resourceOf accepts is exactly /mcp/NAME of a
// known resource, written without escapes: the target an upstream or a
// log sees is the one the edge routed and decided. The corpus is in
// testdata/fuzz/FuzzResourcePath.
func FuzzResourcePath(f *testing.F) {
	for _, s := range []string{
		"/mcp/demo", "/mcp/demo/", "/mcp/../mcp/demo", "/mcp/%64emo", "/mcp/demo%2f..",
		"/mcp/demo?x=1", "/mcp//demo", "/MCP/demo", "/mcp/demo#x", "/mcp/files", "//mcp/demo",
	} {
		f.Add(s)
	}
	known := func(n string) bool { return n == "demo" || n == "files" }
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		name, ok := resourceOf(u, known)
		if !ok {
			return
		}
		if !known(name) || u.Path != "/mcp/"+name || u.EscapedPath() != u.Path {
			t.Fatalf("accepted %q as resource %q (path %q, escaped %q)", target, name, u.Path, u.EscapedPath())
		}
	})
}

func TestResourceOf(t *testing.T) {
	known := func(n string) bool { return n == "demo" }
	for target, want := range map[string]bool{
		"/mcp/demo": true, "/mcp/demo/": false, "/mcp/%64emo": false, "/mcp/demo%2f": false,
		"/mcp/./demo": false, "/mcp/other": false, "/demo": false, "/mcp/": false,
	} {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resourceOf(u, known); ok != want {
			t.Errorf("resourceOf(%q) = %t, want %t", target, ok, want)
		}
	}
}
