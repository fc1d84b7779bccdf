package agent

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/airlockhq/airlock/pkg/token"
)

// fakeEdge is an https MCP endpoint and token endpoint that records what
// reached it; it refuses the first token it issued as invalid, or every
// token with refuseAll.
type fakeEdge struct {
	issued    atomic.Int32
	refuseAll bool
	mu        sync.Mutex
	got       []http.Header
	bodies    []string
}

func (f *fakeEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == token.PathToken {
		n := f.issued.Add(1)
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":300}`, n)
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.got = append(f.got, r.Header.Clone())
	f.bodies = append(f.bodies, string(body))
	f.mu.Unlock()
	if f.refuseAll || r.Header.Get("Authorization") == "Bearer tok-1" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="https://edge/x"`)
		http.Error(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32010,"message":"invalid token"}}`,
			http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func startProxy(t *testing.T, edge *fakeEdge, resources ...string) string {
	t.Helper()
	srv := httptest.NewTLSServer(edge)
	t.Cleanup(srv.Close)
	p := &Proxy{EdgeURL: srv.URL, Resources: resources,
		Client: &http.Client{Transport: token.NewTransport(srv.Client().Transport, nil)}}
	h, err := p.Handler()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenLoopback("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := &http.Server{Handler: h}
	go local.Serve(ln)
	t.Cleanup(func() { local.Close() })
	return "http://" + ln.Addr().String()
}

// TestProxyForwards checks what the proxy sends on: the local client's
// credentials and origin headers are dropped, the agent's token is added,
// and a body refused with a stale token is sent again whole.
func TestProxyForwards(t *testing.T) {
	edge := &fakeEdge{}
	base := startProxy(t, edge, "demo")
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp/demo", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer local-secret")
	req.Header.Set("Cookie", "session=local")
	req.Header.Set("Forwarded", "for=10.0.0.1")
	req.Header.Set("Origin", "http://127.0.0.1:5173")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != body {
		t.Fatalf("through the proxy: %d %s", resp.StatusCode, got)
	}
	edge.mu.Lock()
	defer edge.mu.Unlock()
	if len(edge.got) != 2 || edge.bodies[1] != body {
		t.Fatalf("the edge saw %d requests, bodies %q; want the refused one and its replay", len(edge.got), edge.bodies)
	}
	h := edge.got[1]
	if h.Get("Authorization") != "Bearer tok-2" {
		t.Errorf("Authorization at the edge = %q, want the agent's fresh token", h.Get("Authorization"))
	}
	for _, name := range []string{"Cookie", "Forwarded", "Origin"} {
		if v := h.Get(name); v != "" {
			t.Errorf("%s reached the edge: %q", name, v)
		}
	}
}

// TestProxyRefuses checks the requests the proxy answers itself, and
// that an edge's challenge does not reach the local client.
func TestProxyRefuses(t *testing.T) {
	base := startProxy(t, &fakeEdge{refuseAll: true}, "demo")
	tests := []struct {
		name, path string
		header     map[string]string
		host       string
		want       int
	}{
		{"foreign origin", "/mcp/demo", map[string]string{"Origin": "https://evil.example"}, "", 403},
		{"cross-site fetch", "/mcp/demo", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403},
		{"rebinding host", "/mcp/demo", nil, "evil.example", 403},
		{"IPv6 loopback host", "/mcp/demo", nil, "[::1]:8750", 401},
		{"dot dot", "/mcp/..", nil, "", 404},
		{"not served", "/mcp/other", nil, "", 404},
		{"query", "/mcp/demo?x=1", nil, "", 404},
		{"edge refuses the token", "/mcp/demo", nil, "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, base+tt.path, strings.NewReader(`{}`))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if c := resp.Header.Get("WWW-Authenticate"); c != "" {
				t.Errorf("the local client got the edge's challenge %q", c)
			}
		})
	}
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:0", "[::]:0"} {
		if ln, err := ListenLoopback(addr); err == nil {
			ln.Close()
			t.Errorf("ListenLoopback(%s) succeeded", addr)
		}
	}
}
