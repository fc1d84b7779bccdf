package mcp

import (
	"net/http"
	"testing"
)

func TestCheckRoutingHeaders(t *testing.T) {
	m := &Message{Method: "tools/call", Name: "read_file"}
	tests := []struct {
		name   string
		header http.Header
		ok     bool
	}{
		{"none", http.Header{}, true},
		{"both match", http.Header{HeaderMethod: {"tools/call"}, HeaderName: {"read_file"}}, true},
		{"method only", http.Header{HeaderMethod: {"tools/call"}}, true},
		{"other method", http.Header{HeaderMethod: {"tools/list"}}, false},
		{"other name", http.Header{HeaderName: {"delete_file"}}, false},
		{"twice", http.Header{HeaderName: {"read_file", "read_file"}}, false},
		{"empty name for a named call", http.Header{HeaderName: {""}}, false},
		{"case differs", http.Header{HeaderName: {"Read_File"}}, false},
	}
	for _, tt := range tests {
		err := CheckRoutingHeaders(tt.header, m)
		if (err == nil) != tt.ok {
			t.Errorf("%s: CheckRoutingHeaders = %v, want ok %t", tt.name, err, tt.ok)
		}
		if pe, isParse := err.(*ParseError); err != nil && (!isParse || pe.Code != CodeHeaderMismatch) {
			t.Errorf("%s: error %v is not a ParseError with CodeHeaderMismatch", tt.name, err)
		}
	}
}

// FuzzRoutingHeaders checks, for any body and header values, that
// whatever CheckRoutingHeaders accepts names in its headers exactly what
// the parsed body does: an upstream that routes on the headers sees what
// the edge decided on. The corpus is in testdata/fuzz/FuzzRoutingHeaders.
func FuzzRoutingHeaders(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`), "tools/call", "a", true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`), "resources/read", "file:///y", true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), "ping", "", false)
	f.Fuzz(func(t *testing.T, body []byte, method, name string, withName bool) {
		m, err := Parse(body)
		if err != nil {
			return
		}
		h := http.Header{HeaderMethod: {method}}
		if withName {
			h[HeaderName] = []string{name}
		}
		if CheckRoutingHeaders(h, m) != nil {
			return
		}
		if method != m.Method || (withName && name != m.Name) {
			t.Fatalf("accepted Mcp-Method %q Mcp-Name %q for a body with method %q name %q",
				method, name, m.Method, m.Name)
		}
	})
}
