package agent

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
)

// Proxy serves the agent's MCP endpoints on a loopback address, for MCP
// clients that speak Streamable HTTP but cannot present a client
// certificate: http://127.0.0.1:PORT/mcp/RESOURCE is the edge's
// /mcp/RESOURCE, reached with the agent's certificate and a token for that
// resource. Because anything on the host can reach a loopback port, and a
// web page can make a browser try, it answers only requests whose Host is
// a loopback name and whose Origin, if any, is a loopback origin (no DNS
// rebinding, no cross-site requests), and it drops any credential the
// local client sends.
type Proxy struct {
	// EdgeURL is the edge's base URL, https://host:port.
	EdgeURL string
	// Client sends the requests with the agent's certificate and token
	// ([Agent.HTTPClient]).
	Client *http.Client
	// Resources, if set, are the only resources served; others get 404.
	Resources []string
	// Logger receives failures; nil discards.
	Logger *slog.Logger
}

// ListenLoopback listens on addr, which must be a loopback address
// (127.0.0.0/8, ::1 or localhost): the proxy holds the agent's
// credential, and must not be reachable from another host.
func ListenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	refuse := fmt.Errorf("listen address %q is not a loopback address: the proxy "+
		"lends the agent's credential to whoever connects, so it listens on "+
		"127.0.0.1, ::1 or localhost only", addr)
	if !isLoopbackHost(host) {
		return nil, refuse
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// A name such as localhost resolves: check what it resolved to.
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return nil, refuse
	}
	return ln, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Handler returns the proxy's HTTP handler.
func (p *Proxy) Handler() (http.Handler, error) {
	edge, err := url.Parse(p.EdgeURL)
	if err != nil || edge.Scheme != "https" || edge.Host == "" {
		return nil, fmt.Errorf("edge URL %q must be https://host:port", p.EdgeURL)
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(logkey.Component, "agent.proxy")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = edge.Scheme, edge.Host
			pr.Out.Host = edge.Host
			// The local client's credentials are not ours to forward, and
			// the agent's own are added by the client.
			for _, h := range []string{"Authorization", "Cookie", "Origin", "Forwarded"} {
				pr.Out.Header.Del(h)
			}
		},
		Transport:     p.Client.Transport,
		FlushInterval: -1, // event streams pass at once
		ModifyResponse: func(resp *http.Response) error {
			// The challenge points at the edge's OAuth metadata; a local
			// client that followed it would try to get its own token.
			resp.Header.Del("WWW-Authenticate")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			if code, msg, ok := Refusal(err); ok {
				status := http.StatusUnauthorized
				if code == mcp.CodeInsufficientScope {
					status = http.StatusForbidden
				}
				mcp.WriteError(w, status, nil, code, "airlock proxy: "+msg, nil)
				return
			}
			logger.Warn("proxy request failed", logkey.Resource, r.URL.Path, logkey.Error, err)
			mcp.WriteError(w, http.StatusBadGateway, nil, mcp.CodeBridgeFailed,
				fmt.Sprintf("airlock proxy: cannot reach the edge at %s: %v", p.EdgeURL, err), nil)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !isLoopbackHost(host) {
			mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeForbidden,
				fmt.Sprintf("airlock proxy: Host %q is not a loopback name", r.Host), nil)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !loopbackOrigin(origin) {
			mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeForbidden,
				fmt.Sprintf("airlock proxy: Origin %q is not a loopback origin", origin), nil)
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeForbidden,
				"airlock proxy: a cross-site browser request", nil)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/mcp/")
		if !ok || !resourceName.MatchString(name) || name == "." || name == ".." ||
			r.URL.RawQuery != "" || (len(p.Resources) > 0 && !slices.Contains(p.Resources, name)) {
			mcp.WriteError(w, http.StatusNotFound, nil, mcp.CodeUnknownResource,
				fmt.Sprintf("airlock proxy: no MCP endpoint at %s; endpoints are /mcp/RESOURCE%s",
					r.URL.Path, p.served()), nil)
			return
		}
		if !bufferBody(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}), nil
}

// resourceName is what a resource may be called in a local endpoint.
var resourceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// bufferBody reads the request body into memory, so that it can be sent
// again when the edge refuses a stale token before forwarding anything.
func bufferBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, DefaultMaxMessage+1))
	if err != nil {
		mcp.WriteError(w, http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"airlock proxy: reading the request body: "+err.Error(), nil)
		return false
	}
	if len(body) > DefaultMaxMessage {
		mcp.WriteError(w, http.StatusRequestEntityTooLarge, nil, mcp.CodeBodyTooLarge,
			fmt.Sprintf("airlock proxy: a body over %d bytes", DefaultMaxMessage), nil)
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	return true
}

func (p *Proxy) served() string {
	if len(p.Resources) == 0 {
		return ""
	}
	return " for " + strings.Join(p.Resources, ", ")
}

// loopbackOrigin reports whether origin is http(s) on a loopback host.
func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return isLoopbackHost(u.Hostname())
}
