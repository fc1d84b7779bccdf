package edge_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/pkg/token"
)

// rawRequest sends raw bytes to the edge over TLS with the agent's
// certificate, HTTP/1.1, and returns the status of the first answer, and
// whether the edge then closed the connection.
func rawRequest(t *testing.T, tc *tls.Config, addr, raw string) (status int, closed bool) {
	t.Helper()
	tc = tc.Clone()
	tc.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Anything after the first answer would be the answer to a smuggled
	// request.
	_, err = http.ReadResponse(br, nil)
	return resp.StatusCode, err != nil
}

// TestRequestFramingTricks sends the framings that make two HTTP parsers
// disagree on where a request ends: the edge must refuse them or read
// them one way only, and no second, smuggled request may reach the
// upstream.
func TestRequestFramingTricks(t *testing.T) {
	v, e, up := demoEnv(t, true, nil, nil)
	tc := v.agentTLS("alice")
	addr := e.Addr().String()
	// A token for the real request: framing tricks must fail before it
	// matters, and the one that is read must be decided as usual.
	tok := agentToken(t, tc, e)
	echo := echoCall(1, "framed")
	// The smuggled request carries the token too: only its framing can
	// stop it.
	smuggled := "POST /mcp/demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Accept: application/json, text/event-stream\r\nAuthorization: Bearer " + tok + "\r\n" +
		"Content-Length: " + fmt.Sprint(len(echoCall(2, "smuggled"))) + "\r\n\r\n" + echoCall(2, "smuggled")
	head := "POST /mcp/demo HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + tok +
		"\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
	cases := []struct {
		name string
		raw  string
		ok   func(int) bool
	}{
		{"Content-Length and Transfer-Encoding",
			head + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
				fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(echo), echo) + smuggled,
			func(s int) bool { return s == http.StatusOK || s == http.StatusBadRequest }},
		{"two different Content-Lengths",
			head + fmt.Sprintf("Content-Length: %d\r\nContent-Length: 4\r\n\r\n", len(echo)) + echo + smuggled,
			func(s int) bool { return s == http.StatusBadRequest }},
		{"Transfer-Encoding other than chunked",
			head + "Transfer-Encoding: gzip, chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(echo), echo) + smuggled,
			func(s int) bool { return s == http.StatusBadRequest || s == http.StatusNotImplemented }},
	}
	answered := int64(0)
	for _, tc2 := range cases {
		t.Run(tc2.name, func(t *testing.T) {
			status, _ := rawRequest(t, tc, addr, tc2.raw)
			if !tc2.ok(status) {
				t.Errorf("status %d", status)
			}
			if status == http.StatusOK {
				answered++
			}
		})
	}
	// Each case may bring at most its own request to the upstream, and
	// only when the edge answered it: a smuggled one would be an extra.
	if got := up.rec.requests.Load(); got != answered {
		t.Errorf("the upstream saw %d requests for %d answered: a smuggled request got through", got, answered)
	}
}

// agentToken fetches an access token for the demo resource.
func agentToken(t *testing.T, tc *tls.Config, e *edge.Edge) string {
	t.Helper()
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := token.Fetch(testContext(t), plain, "https://"+e.Addr().String()+token.PathToken,
		token.Request{Resources: []string{mcpURL(e, "demo")}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.AccessToken
}

// TestSlowlorisClosed: a client that never finishes its request head is
// cut off by the header timeout, and meanwhile other agents are served
// without waiting for it.
func TestSlowlorisClosed(t *testing.T) {
	const headerTimeout = 3 * time.Second
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}},
		func(c *edge.Config) { c.ReadHeaderTimeout = headerTimeout })
	up := v.startUpstream(true)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	tc := v.agentTLS("slow").Clone()
	tc.NextProtos = []string{"http/1.1"}
	opened := time.Now()
	var slow []*tls.Conn
	for range 20 {
		conn, err := tls.Dial("tcp", e.Addr().String(), tc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST /mcp/demo HTTP/1.1\r\nHost: x\r\n")
		slow = append(slow, conn)
	}
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(i, "fast"), nil)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"text":"fast"`) {
			t.Fatalf("an agent beside 20 slow clients: %v %s %v", resp, body, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	// All served while every slow client still held its connection: no
	// call waited for the header timeout to free the edge.
	if took := time.Since(opened); took >= headerTimeout {
		t.Errorf("20 calls beside the slow clients took %s (the slowest %s), not under the %s header timeout",
			took, slowest, headerTimeout)
	}
	for i, conn := range slow {
		// The edge closes the connection; keep trickling to see it.
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var err error
		for err == nil {
			_, err = io.WriteString(conn, "X-Slow: 1\r\n")
			if err == nil {
				var buf [1]byte
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, rerr := conn.Read(buf[:]); rerr != nil && !isTimeout(rerr) {
					err = rerr
				}
			}
		}
		if isTimeout(err) {
			t.Errorf("slow client %d was still connected after 10 s", i)
		}
	}
}

func isTimeout(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}
