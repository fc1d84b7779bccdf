package tunnel

import (
	"net/http"
	"strings"
)

// hopHeaders are meaningful only on one hop (RFC 9110 section 7.6.1) and
// never cross the tunnel.
var hopHeaders = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Proxy-Connection",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// CopyEndToEnd copies the end-to-end headers of src into dst: everything
// but the hop-by-hop headers and the headers that src's Connection header
// names.
func CopyEndToEnd(dst, src http.Header) {
	named := map[string]bool{}
	for _, v := range src.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	for k, vs := range src {
		if named[k] || isHop(k) {
			continue
		}
		dst[k] = append(dst[k][:0:0], vs...)
	}
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}
