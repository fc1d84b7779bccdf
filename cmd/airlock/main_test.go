package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/airlockhq/airlock/pkg/token"
)

// airlock runs the command line in-process and returns what it printed.
func airlock(ctx context.Context, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// runAirlock starts a long-running command; stopping it is cancelling
// the returned context's parent, after which the done channel reports
// the command's error.
func runAirlock(t *testing.T, args ...string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := airlock(ctx, args...)
		done <- err
	}()
	var once bool
	var result error
	stop = func() error {
		if !once {
			once = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("command did not stop within 30s")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agentClient is an HTTPS client with the agent credential of a dev.json.
func agentClient(t *testing.T, info devInfo) *http.Client {
	t.Helper()
	pool, err := certs.ReadPool(info.CACert)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := certs.LoadCredential(info.AgentCert, info.AgentKey)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cred.TLSCertificate()}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: token.NewTransport(tr, nil), Timeout: 30 * time.Second}
}

func post(t *testing.T, client *http.Client, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

// TestDevQuickstart runs `airlock dev` as a newcomer would and follows its
// walkthrough with the files dev.json names.
func TestDevQuickstart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "airlock-dev")
	var firstRoot []byte
	for run := range 2 { // the second run reuses the folder and its CA
		stop := runAirlock(t, "dev", "--dir", dir, "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
		devFile := filepath.Join(dir, "dev.json")
		var info devInfo
		waitFor(t, "dev.json", func() bool {
			data, err := os.ReadFile(devFile)
			if err != nil || json.Unmarshal(data, &info) != nil {
				return false
			}
			resp, err := agentClient(t, info).Get(info.EdgeURL + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})

		for _, f := range []string{info.CACert, info.AgentCert, info.AgentKey} {
			if !filepath.IsAbs(f) {
				t.Errorf("dev.json path %q is not absolute", f)
			}
			if _, err := os.Stat(f); err != nil {
				t.Errorf("dev.json names a missing file: %v", err)
			}
		}
		url := info.Resources["demo"]
		if url != info.EdgeURL+"/mcp/demo" {
			t.Fatalf("dev.json resources = %v", info.Resources)
		}

		client := agentClient(t, info)
		resp, body := post(t, client, url, initialize, nil)
		sid := resp.Header.Get("Mcp-Session-Id")
		if resp.StatusCode != http.StatusOK || sid == "" || !strings.Contains(body, demoserver.Name) {
			t.Fatalf("initialize: status %d session %q body %s", resp.StatusCode, sid, body)
		}
		post(t, client, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
		resp, body = post(t, client, url, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"read_note"`) {
			t.Fatalf("tools/list: status %d body %s", resp.StatusCode, body)
		}

		root, err := os.ReadFile(info.CACert)
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			firstRoot = root
		} else if !bytes.Equal(root, firstRoot) {
			t.Error("a second airlock dev in the same folder made a new CA")
		}
		if err := stop(); err != nil {
			t.Fatalf("airlock dev did not stop cleanly: %v", err)
		}
		// The next run must be seen writing its own.
		os.Remove(devFile)
	}
}

// TestExampleConfigs follows the comments of examples/edge.yaml and
// examples/connector.yaml and the README: init, run the edge, enroll a
// connector and an agent with join tokens, call through them, then
// administer the edge through its local socket and over mTLS.
func TestExampleConfigs(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	demo := httptest.NewServer(demoserver.Handler(demoserver.Options{}, true))
	t.Cleanup(demo.Close)

	addr := freeAddr(t)
	copyExample(t, "edge.yaml", filepath.Join(dir, "edge.yaml"), nil)
	copyExample(t, "connector.yaml", filepath.Join(dir, "connector.yaml"),
		strings.NewReplacer("http://127.0.0.1:3000/mcp", demo.URL, "127.0.0.1:8443", addr))
	edgeData := filepath.Join(dir, "edge-data")
	if _, err := airlock(ctx, "edge", "init", "--dir", edgeData); err != nil {
		t.Fatalf("edge init: %v", err)
	}
	// The starting policy grants no tool; grant alice the echo tool as
	// docs/policy.md shows.
	grants := `{"grants": {"tools": {"alice": ["echo"]}}}`
	if err := os.WriteFile(filepath.Join(edgeData, "policy", "data.json"), []byte(grants), 0o644); err != nil {
		t.Fatal(err)
	}

	// The documented values are the defaults.
	ec, err := edge.LoadConfig(filepath.Join(dir, "edge.yaml"))
	if err != nil {
		t.Fatalf("loading examples/edge.yaml: %v", err)
	}
	wantEdge := edge.Config{DataDir: ec.DataDir, Resources: ec.Resources, Hosts: ec.Hosts}.WithDefaults()
	if diff := cmp.Diff(wantEdge, ec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("examples/edge.yaml differs from the defaults (-default +example):\n%s", diff)
	}
	cc, err := connector.LoadConfig(filepath.Join(dir, "connector.yaml"))
	if err != nil {
		t.Fatalf("loading examples/connector.yaml: %v", err)
	}
	wantConn := connector.Config{Name: cc.Name, Edges: cc.Edges, DataDir: cc.DataDir,
		Resources: cc.Resources}.WithDefaults()
	if diff := cmp.Diff(wantConn, cc); diff != "" {
		t.Errorf("examples/connector.yaml differs from the defaults (-default +example):\n%s", diff)
	}

	stopEdge := runAirlock(t, "edge", "--config", filepath.Join(dir, "edge.yaml"), "--listen", addr, "--ops-listen", "off")
	waitFor(t, "the edge's admin socket", func() bool {
		_, err := os.Stat(edge.AdminSocket(edgeData))
		return err == nil
	})
	admin := func(args ...string) string {
		t.Helper()
		out, err := airlock(ctx, append([]string{"admin", "--data", edgeData}, args...)...)
		if err != nil {
			t.Fatalf("admin %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	joinToken := func(kind, name string) string {
		t.Helper()
		var info edge.TokenInfo
		decodeJSON(t, admin("--json", "token", "create", "--kind", kind, "--name", name), &info)
		return info.Token
	}

	// The connector enrolls on its first start; the agent with its own command.
	stopConn := runAirlock(t, "connector", "--config", filepath.Join(dir, "connector.yaml"),
		"--token", joinToken("connector", "connector-1"))
	profile := filepath.Join(dir, "alice")
	if out, err := airlock(ctx, "agent", "enroll", "--edge", "https://"+addr,
		"--token", joinToken("agent", "alice"), "--dir", profile); err != nil {
		t.Fatalf("agent enroll: %v\n%s", err, out)
	}
	holder, err := enroll.Load(profile)
	if err != nil {
		t.Fatal(err)
	}
	client := holder.HTTPClient()
	url := "https://" + addr + "/mcp/demo"
	// An access token for scripts, as the README shows.
	out, err := airlock(ctx, "agent", "token", "--profile", profile, "--resource", url)
	if err != nil {
		t.Fatalf("agent token: %v\n%s", err, out)
	}
	// The token is the first line; the second (stderr) says what it is for.
	tok, _, _ := strings.Cut(out, "\n")
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"through"}}}`
	var resp *http.Response
	var body string
	waitFor(t, "a call through the edge and connector", func() bool {
		resp, body = post(t, client, url, call, bearer)
		return resp.StatusCode != http.StatusServiceUnavailable
	})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"text":"through"`) {
		t.Fatalf("call: status %d body %s", resp.StatusCode, body)
	}

	checkAdminLists(t, admin)
	if out := admin("audit", "tail", "-n", "50"); !strings.Contains(out, "allow") ||
		!strings.Contains(out, "spiffe://airlock.local/agent/alice  demo  tools/call echo") {
		t.Errorf("admin audit tail =\n%s", out)
	}

	// A new signing key: the connector learns it at once, and tokens of
	// the old key keep working until they expire.
	var keys []edge.KeyInfo
	decodeJSON(t, admin("--json", "keys", "rotate", "--alg", "ES256"), &keys)
	if len(keys) != 2 || !keys[0].Signing || keys[0].Alg != "ES256" || keys[1].Signing || keys[1].RemoveAfter.IsZero() {
		t.Fatalf("admin keys rotate = %+v, want a signing ES256 key and the retired one", keys)
	}
	if resp, body := post(t, client, url, call, bearer); resp.StatusCode != http.StatusOK {
		t.Fatalf("call with the old key's token after rotation: %d %s", resp.StatusCode, body)
	}
	out, err = airlock(ctx, "agent", "token", "--profile", profile, "--resource", "demo")
	if err != nil {
		t.Fatalf("agent token after rotation: %v\n%s", err, out)
	}
	fresh, _, _ := strings.Cut(out, "\n")
	if resp, body := post(t, client, url, call, map[string]string{"Authorization": "Bearer " + fresh}); resp.StatusCode != http.StatusOK {
		t.Fatalf("call with a token of the new key: %d %s", resp.StatusCode, body)
	}

	// Remote administration: the admin certificate from edge init, over mTLS.
	adminCert := filepath.Join(edgeData, "admin", "admin.crt")
	out, err = airlock(ctx, "admin", "--edge", "https://"+addr, "--ca", certs.RootFile(edge.CADir(edgeData)),
		"--cert", adminCert, "--key", filepath.Join(edgeData, "admin", "admin.key"), "revoke", "agent/alice",
		"--reason", "rotated out")
	if err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("remote admin revoke: %v\n%s", err, out)
	}
	// On the connection it has, the agent is told why; a new connection
	// is refused at the handshake.
	resp, body = post(t, client, url, call, bearer)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "rotated out") {
		t.Errorf("call after revocation: status %d body %s, want 401 naming the reason", resp.StatusCode, body)
	}
	if resp, err := holder.HTTPClient().Post(url, "application/json", strings.NewReader(call)); err == nil {
		resp.Body.Close()
		t.Errorf("new connection after revocation: status %d, want the handshake refused", resp.StatusCode)
	}
	if out := admin("revocations"); !strings.Contains(out, "spiffe://airlock.local/agent/alice") || !strings.Contains(out, "rotated out") {
		t.Errorf("admin revocations =\n%s", out)
	}
	// An agent certificate is not an admin certificate.
	_, err = airlock(ctx, "admin", "--edge", "https://"+addr, "--ca", enroll.BundleFile(profile),
		"--cert", enroll.IdentityFile(profile), "agents")
	if err == nil {
		t.Error("the admin API accepted an agent certificate")
	}

	if err := stopConn(); err != nil {
		t.Errorf("connector stop: %v", err)
	}
	if err := stopEdge(); err != nil {
		t.Errorf("edge stop: %v", err)
	}
}

// checkAdminLists checks what admin connectors, agents and tokens say
// about the walkthrough's connector and agent, in JSON and as tables.
func checkAdminLists(t *testing.T, admin func(...string) string) {
	t.Helper()
	var conns, agents []edge.IdentityInfo
	decodeJSON(t, admin("--json", "connectors"), &conns)
	if len(conns) != 1 || conns[0].Name != "connector-1" || conns[0].Connections != 2 ||
		!slices.Equal(conns[0].Resources, []string{"demo"}) || conns[0].CertNotAfter.IsZero() {
		t.Errorf("admin connectors --json = %+v, want connector-1 serving demo over 2 tunnels", conns)
	}
	decodeJSON(t, admin("--json", "agents"), &agents)
	if len(agents) != 1 || agents[0].Identity != "spiffe://airlock.local/agent/alice" || agents[0].Revoked {
		t.Errorf("admin agents --json = %+v, want alice, not revoked", agents)
	}
	var tokens []edge.TokenInfo
	decodeJSON(t, admin("--json", "tokens"), &tokens)
	for _, tok := range tokens {
		if tok.State != "used" || tok.UsedSerial == "" || tok.Token != "" {
			t.Errorf("admin tokens: %+v, want used, with the serial and without the secret", tok)
		}
	}
	if len(tokens) != 2 {
		t.Errorf("admin tokens lists %d tokens, want 2", len(tokens))
	}
	if out := admin("connectors"); !strings.Contains(out, "connector-1") || !strings.Contains(out, "CONNECTIONS") {
		t.Errorf("admin connectors =\n%s", out)
	}
}

func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
}

func TestConfigErrorsNameKeyAndFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(file, []byte("data_dir: ./nowhere\nlisten: 127.0.0.1:8443\nlisten_port: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := airlock(t.Context(), "edge", "--config", file)
	if err == nil || !strings.Contains(err.Error(), "listen_port") || !strings.Contains(err.Error(), file) {
		t.Errorf("unknown key: err = %v, want it to name listen_port and %s", err, file)
	}

	if err := os.WriteFile(file, []byte("data_dir: ./nowhere\nlisten: nohost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = airlock(t.Context(), "edge", "--config", file)
	for _, want := range []string{"listen", "nohost", "data_dir", filepath.Join(dir, "nowhere"), file} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad values: err = %v, want it to mention %q", err, want)
		}
	}
}

func copyExample(t *testing.T, name, to string, r *strings.Replacer) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		data = []byte(r.Replace(string(data)))
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback host:port free for both TCP and UDP.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// TestAgentTokenRenewsDueCertificate: an agent that only runs short
// commands still renews, when a command finds its certificate due.
func TestAgentTokenRenewsDueCertificate(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	edgeData := filepath.Join(dir, "edge-data")
	if _, err := airlock(ctx, "edge", "init", "--dir", edgeData); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nops_listen: \"off\"\nagent_cert_lifetime: 3s\n"+
		"resources:\n  - name: demo\n    connectors: [c1]\n", edgeData, addr)
	if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runAirlock(t, "edge", "--config", filepath.Join(dir, "edge.yaml"))
	waitFor(t, "the edge's admin socket", func() bool {
		_, err := os.Stat(edge.AdminSocket(edgeData))
		return err == nil
	})
	var info edge.TokenInfo
	out, err := airlock(ctx, "admin", "--data", edgeData, "--json", "token", "create", "--kind", "agent", "--name", "a1")
	if err != nil {
		t.Fatal(err, out)
	}
	decodeJSON(t, out, &info)
	profile := filepath.Join(dir, "a1")
	if out, err := airlock(ctx, "agent", "enroll", "--edge", "https://"+addr, "--token", info.Token, "--dir", profile); err != nil {
		t.Fatal(err, out)
	}
	h, _ := enroll.Load(profile)
	first := h.Credential().Leaf()
	waitFor(t, "the certificate to be due", func() bool { return time.Now().After(enroll.RenewAt(first, 0)) })

	out, err = airlock(ctx, "agent", "token", "--profile", profile, "--resource", "demo")
	if err != nil || !strings.Contains(out, "renewed spiffe://airlock.local/agent/a1") {
		t.Fatalf("agent token with a due certificate = %v\n%s", err, out)
	}
	h, _ = enroll.Load(profile)
	if h.Credential().Leaf().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("the profile still holds the old certificate")
	}
}
