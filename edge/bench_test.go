package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/airlockhq/airlock/pkg/token"
)

// benchParallelism makes RunParallel run this many goroutines per
// GOMAXPROCS, about the 50 clients of airlock bench on a small machine.
const benchParallelism = 25

// BenchmarkToolCall calls the stateless demo server's echo tool one call
// at a time, directly and through the edge and the tunnel.
func BenchmarkToolCall(b *testing.B) {
	benchSequential(b, startBenchTargets(b, demoHandler()))
}

// BenchmarkToolCallParallel is BenchmarkToolCall with benchParallelism
// callers per GOMAXPROCS.
func BenchmarkToolCallParallel(b *testing.B) {
	benchParallel(b, startBenchTargets(b, demoHandler()))
}

// BenchmarkForward is BenchmarkToolCall with an upstream that answers
// without the MCP SDK's work, which costs several times what Airlock
// does and would hide it.
func BenchmarkForward(b *testing.B) {
	benchSequential(b, startBenchTargets(b, http.HandlerFunc(fixedEcho)))
}

// BenchmarkForwardParallel is BenchmarkForward with benchParallelism
// callers per GOMAXPROCS.
func BenchmarkForwardParallel(b *testing.B) {
	benchParallel(b, startBenchTargets(b, http.HandlerFunc(fixedEcho)))
}

func benchSequential(b *testing.B, targets []*benchTarget) {
	for _, t := range targets {
		b.Run(t.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				t.call(b, i)
			}
		})
	}
}

func benchParallel(b *testing.B, targets []*benchTarget) {
	for _, t := range targets {
		b.Run(t.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					t.call(b, i)
				}
			})
		})
	}
}

func demoHandler() http.Handler {
	return demoserver.Handler(demoserver.Options{}, true)
}

// fixedEcho answers an echo tools/call as the stateless demo server does,
// with one SSE event, but parses only the text it echoes.
func fixedEcho(w http.ResponseWriter, r *http.Request) {
	var call struct {
		ID     int `json:"id"`
		Params struct {
			Arguments struct {
				Text string `json:"text"`
			} `json:"arguments"`
		} `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	text, _ := json.Marshal(call.Params.Arguments.Text)
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"content\":"+
		"[{\"type\":\"text\",\"text\":%s}]}}\n\n", call.ID, text)
}

// benchTarget is one way to reach the echo tool.
type benchTarget struct {
	name   string
	url    string
	client *http.Client
}

// call makes echo call i and fails b unless the answer is a 200 that
// echoes its text.
func (t *benchTarget) call(b *testing.B, i int) {
	text := "bench-" + strconv.Itoa(i)
	resp, err := t.post(echoCall(i, text))
	if err != nil {
		b.Fatalf("%s call %d: %v", t.name, i, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"text":"`+text+`"`)) {
		b.Fatalf("%s call %d: status %d, %v: %.200s", t.name, i, resp.StatusCode, err, body)
	}
}

// post sends one MCP message to the target.
func (t *benchTarget) post(body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, t.url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	return t.client.Do(req)
}

// startBenchTargets starts an upstream serving h, an edge and a connector
// serving it as resource "demo", and returns the direct and the airlock
// target. It does for a benchmark what newEnv, startEdge,
// startUpstream and startConnector do for a test: those take a *testing.T.
func startBenchTargets(b *testing.B, h http.Handler) []*benchTarget {
	b.Helper()
	dir := b.TempDir()
	dataDir := filepath.Join(dir, "edge")
	// The example policy, granting the benchmark's agent the echo tool:
	// every call pays for a real decision and its audit record.
	examplePolicyFor(b, dataDir, `{"grants": {"tools": {"bench-agent": ["echo"]}}}`)
	ca, err := certs.Init(edge.CADir(dataDir), certs.DefaultTrustDomain)
	if err != nil {
		b.Fatalf("creating CA: %v", err)
	}
	up := httptest.NewServer(h)
	b.Cleanup(up.Close)

	e, err := edge.New(edge.Config{
		DataDir:   dataDir,
		Listen:    "127.0.0.1:0",
		OpsListen: "off",
		AuditFile: "off",
		Resources: []edge.Resource{{Name: "demo", Connectors: []string{"bench"}}},
	}.WithDefaults(), nil)
	if err != nil {
		b.Fatalf("creating edge: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatalf("starting edge: %v", err)
	}
	b.Cleanup(func() { e.Shutdown(context.Background()) })
	runBenchConnector(b, ca, e, dir, up.URL+"/mcp")

	agent := issueBench(b, ca, certs.KindAgent, "bench-agent")
	tc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{agent.TLSCertificate()}, MinVersion: tls.VersionTLS13}
	return []*benchTarget{
		{name: "direct", url: up.URL + "/mcp", client: benchClient(b, nil)},
		{name: "airlock", url: mcpURL(e, "demo"), client: benchClient(b, tc)},
	}
}

func runBenchConnector(b *testing.B, ca *certs.Authority, e *edge.Edge, dir, upstreamURL string) {
	b.Helper()
	cred := issueBench(b, ca, certs.KindConnector, "bench")
	certFile, keyFile := filepath.Join(dir, "bench.crt"), filepath.Join(dir, "bench.key")
	if err := cred.WriteFiles(certFile, keyFile); err != nil {
		b.Fatal(err)
	}
	cfg := connector.Config{
		Name:      "bench",
		Edges:     []string{e.TunnelAddr().String()},
		CAFile:    certs.RootFile(edge.CADir(filepath.Join(dir, "edge"))),
		CertFile:  certFile,
		KeyFile:   keyFile,
		Resources: []connector.Resource{{Name: "demo", URL: upstreamURL}},
	}.WithDefaults()
	c, err := connector.New(cfg, connector.Options{})
	if err != nil {
		b.Fatalf("creating connector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(20 * time.Second); c.Connected() < cfg.Connections; {
		if time.Now().After(deadline) {
			b.Fatal("timed out waiting for the connector to connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func issueBench(b *testing.B, ca *certs.Authority, kind certs.Kind, name string) *certs.Credential {
	b.Helper()
	cred, err := ca.Issue(context.Background(), certs.SignRequest{Kind: kind, Name: name, Lifetime: time.Hour})
	if err != nil {
		b.Fatalf("issuing %s %s: %v", kind, name, err)
	}
	return cred
}

// benchClient keeps a keep-alive connection for every parallel caller, so
// that no call after the first few pays for a TCP or TLS handshake.
func benchClient(b *testing.B, tc *tls.Config) *http.Client {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	tr := &http.Transport{
		Protocols:           protos,
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: benchParallelism * runtime.GOMAXPROCS(0),
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	// Calls to the edge carry an access token, fetched once and cached,
	// as an agent's would.
	return &http.Client{Transport: token.NewTransport(tr, nil), Timeout: 10 * time.Second}
}

// BenchmarkRead1MiB is a call whose answer is one SSE event of 1 MiB, as
// the demo server's blob tool answers, from an upstream that has it ready:
// what the edge and the tunnel add to a large answer.
func BenchmarkRead1MiB(b *testing.B) {
	text := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3", 1<<20/40)
	event := []byte(`event: message` + "\n" + `data: {"jsonrpc":"2.0","id":1,"result":{"content":` +
		`[{"type":"text","text":"` + text + `"}]}}` + "\n\n")
	blob := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(event)
	}
	for _, t := range startBenchTargets(b, http.HandlerFunc(blob)) {
		b.Run(t.name, func(b *testing.B) {
			b.SetBytes(int64(len(event)))
			for b.Loop() {
				resp, err := t.post(echoCall(1, "blob"))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || n < 1<<20 {
					b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			}
		})
	}
}
