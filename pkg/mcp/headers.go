package mcp

import (
	"fmt"
	"net/http"
	"strings"
)

// Routing headers of MCP 2026-07-28: a request names its method and
// target in headers too, so that proxies can route without reading the
// body.
const (
	HeaderMethod = "Mcp-Method"
	HeaderName   = "Mcp-Name"
)

// CheckRoutingHeaders checks that the routing headers a request carries
// agree with its body: each that is present must appear once and equal
// m's method or target name. Absent headers are not an error (older
// protocol versions have none), but an upstream that routes on them then
// sees only what was checked. The error is a [*ParseError] with
// [CodeHeaderMismatch].
func CheckRoutingHeaders(h http.Header, m *Message) error {
	for _, c := range []struct{ header, want string }{
		{HeaderMethod, m.Method}, {HeaderName, m.Name},
	} {
		got, ok := h[c.header]
		if ok && (len(got) != 1 || got[0] != c.want) {
			return &ParseError{Code: CodeHeaderMismatch, Msg: fmt.Sprintf(
				"header %s %q does not match the body's %q", c.header, strings.Join(got, ","), c.want)}
		}
	}
	return nil
}
