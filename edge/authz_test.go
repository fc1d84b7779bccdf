package edge_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/airlockhq/airlock/pkg/audit"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/plugin"
	"github.com/airlockhq/airlock/pkg/token"

	"github.com/airlockhq/airlock/internal/policytest"
)

// examplePolicy copies examples/policy into the edge's policy folder.
func examplePolicy(t *testing.T, v *env, grants string) {
	t.Helper()
	examplePolicyFor(t, v.dataDir, grants)
}

// examplePolicyFor writes examples/policy/authz.rego and grants as the
// policy of the edge in dataDir.
func examplePolicyFor(t testing.TB, dataDir, grants string) {
	t.Helper()
	dir := filepath.Join(dataDir, "policy")
	data, err := os.ReadFile("../examples/policy/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"authz.rego": string(data), "data.json": grants} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// policyEnv is demoEnv with the example policy, granting alice echo,
// read_file and count.
func policyEnv(t *testing.T, stateless bool) (*env, *edge.Edge, *upstream) {
	t.Helper()
	v := newEnv(t)
	examplePolicy(t, v, `{"grants": {"tools": {"alice": ["echo", "read_file", "count"]}}}`)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, func(c *edge.Config) {
		c.PolicyReloadInterval = 20 * time.Millisecond
	})
	up := v.startUpstream(stateless)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	return v, e, up
}

func TestPolicyDecidesEveryCall(t *testing.T) {
	v, e, up := policyEnv(t, false)
	ctx := testContext(t)
	cs := connectMCP(t, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), nil)

	if got := textOf(t, call(t, cs, "echo", map[string]any{"text": "allowed"})); got != "allowed" {
		t.Errorf("echo = %q", got)
	}
	calls := up.stats.Calls()

	// A tool not granted: the client gets the policy's reason.
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "add_note", Arguments: map[string]any{"title": "x", "body": "y"}})
	if err == nil || !strings.Contains(err.Error(), `tool "add_note" is not granted to agent alice`) {
		t.Errorf("add_note = %v, want the policy's reason", err)
	}
	// The same tool, allowed with one argument and denied with another.
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "public/a.txt"}}); err != nil &&
		strings.Contains(err.Error(), "denied by policy") {
		t.Errorf("read_file of public/a.txt was denied: %v", err)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "private/plan.txt"}})
	if err == nil || !strings.Contains(err.Error(), `read_file may only read files under public/, not \"private/plan.txt\"`) &&
		!strings.Contains(err.Error(), `read_file may only read files under public/, not "private/plan.txt"`) {
		t.Errorf("read_file of private/plan.txt = %v, want the deny message", err)
	}
	// The session goes on after denials.
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Errorf("ListTools after denials = %v", err)
	}
	if got := up.stats.Calls() - calls; got != 1 {
		t.Errorf("%d tools/call reached the upstream after the first, want 1 (the public read_file)", got)
	}
}

func TestPolicyDenialAnswer(t *testing.T) {
	v, e, up := policyEnv(t, true)
	ctx := testContext(t)
	client := httpClient(t, v.agentTLS("bob"))
	before := up.rec.requests.Load()
	resp, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(7, "no"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":7`) ||
		!strings.Contains(string(body), `"code":-32018`) || !strings.Contains(string(body), "not granted to agent bob") ||
		!strings.Contains(string(body), resp.Header.Get("Airlock-Request-Id")) {
		t.Errorf("denial = %d %s, want 200 with a -32018 error for id 7 naming the reason and the request id", resp.StatusCode, body)
	}
	// A method the policy does not know is denied by default.
	resp, body, _ = rpc(t, ctx, client, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":8,"method":"tasks/list"}`, nil)
	if !strings.Contains(string(body), `"code":-32018`) {
		t.Errorf("tasks/list = %d %s, want denied", resp.StatusCode, body)
	}
	if up.rec.requests.Load() != before {
		t.Error("a denied request reached the upstream")
	}
}

func TestBrokenPolicyUnderLoadKeepsLastGood(t *testing.T) {
	v, e, _ := policyEnv(t, true)
	ctx := testContext(t)
	client := httpClient(t, v.agentTLS("alice"))
	good := e.Policy().Revision()
	tr := startTraffic(t, func() *http.Client { return client }, mcpURL(e, "demo"), 4)

	// A broken file under load: the edge keeps the last good policy, says
	// so, and every call keeps being decided by it.
	broken := filepath.Join(v.dataDir, "policy", "broken.rego")
	if err := os.WriteFile(broken, []byte("package airlock.authz\n\nallow if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload to fail", func() bool { return e.Policy().Err() != nil })
	after := tr.calls.Load()
	waitFor(t, "more calls under the broken file", func() bool { return tr.calls.Load() > after+20 })
	tr.finish(t)
	if e.Policy().Revision() != good {
		t.Error("a broken policy replaced the last good one")
	}

	// A policy that fails while evaluating denies; it never allows.
	os.Remove(broken)
	writePolicy(t, v.dataDir, "package airlock.authz\n\nallow if 1 / count(object.get(input, \"nothing\", [])) > 0\n")
	waitFor(t, "the erroring policy to load", func() bool { return e.Policy().Revision() != good && e.Policy().Err() == nil })
	_, body, err := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(9, "x"), nil)
	if err != nil || !strings.Contains(string(body), "could not decide") || !strings.Contains(string(body), `"code":-32018`) {
		t.Errorf("call under an erroring policy = %v %s, want denied", err, body)
	}
}

func TestListsFiltered(t *testing.T) {
	for _, tt := range []struct {
		name string
		json bool
	}{{"SSE answers", false}, {"JSON answers", true}} {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			examplePolicy(t, v, `{"grants": {"tools": {"alice": ["echo", "read_file"]}}}`)
			e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
			h, _ := demoserver.HandlerWithStats(demoserver.Options{SandboxDir: t.TempDir(), JSONResponse: tt.json}, false)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: srv.URL + "/mcp"}}, nil)
			ctx := testContext(t)

			cs := connectMCP(t, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), nil)
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"echo", "read_file"}) {
				t.Errorf("alice's tools/list = %v, want [echo read_file]", names)
			}
			// Another agent, granted nothing, sees no tool; resources
			// (notes) stay listed for everyone, as the policy allows.
			bob := connectMCP(t, httpClient(t, v.agentTLS("bob")), mcpURL(e, "demo"), nil)
			if res, err := bob.ListTools(ctx, nil); err != nil || len(res.Tools) != 0 {
				t.Errorf("bob's tools/list = %v, %v; want none", res, err)
			}
			if _, err := bob.ListResourceTemplates(ctx, nil); err != nil {
				t.Errorf("bob's resources/templates/list = %v", err)
			}
		})
	}
}

func TestListFilteredByScope(t *testing.T) {
	v, e, _ := policyEnv(t, false)
	ctx := testContext(t)
	tc := v.agentTLS("alice")
	base := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(base.CloseIdleConnections)
	tokens := token.NewTransport(base, nil)
	tokens.Scope = "mcp:demo:tools/call:echo"
	cs := connectMCP(t, &http.Client{Transport: tokens}, mcpURL(e, "demo"), nil)
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tools) != 1 || res.Tools[0].Name != "echo" {
		t.Errorf("tools/list with an echo-only token = %v, want only echo", res.Tools)
	}
}

func TestServerRequestDeniedByPolicy(t *testing.T) {
	v := newEnv(t)
	examplePolicy(t, v, `{"grants": {"tools": {"alice": ["ask", "echo"]}}}`)
	deny := "package airlock.authz\n\ndeny contains \"this server may not question agents\" if input.mcp.method == \"elicitation/create\"\n"
	if err := os.WriteFile(filepath.Join(v.dataDir, "policy", "deny.rego"), []byte(deny), 0o644); err != nil {
		t.Fatal(err)
	}
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	up := v.startUpstream(false)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	ctx := testContext(t)

	var asked atomic.Int32
	cs := connectMCP(t, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "leaked"}}, nil
		},
	})
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: "ask", Arguments: map[string]any{"question": "password?"}})
	if callCtx.Err() != nil {
		t.Fatal("the call hung: the server never got an answer to its denied request")
	}
	if asked.Load() != 0 {
		t.Error("a denied elicitation reached the agent")
	}
	if err == nil && !res.IsError {
		t.Errorf("ask = %v, want the denial to fail the call", textOf(t, res))
	}
	t.Logf("ask ended with %v %v", res, err)
	// The session goes on.
	if got := textOf(t, call(t, cs, "echo", map[string]any{"text": "still here"})); got != "still here" {
		t.Errorf("echo after the denial = %q", got)
	}
}

func TestAuditRecords(t *testing.T) {
	v, e, _ := policyEnv(t, true)
	ctx := testContext(t)
	alice := httpClient(t, v.agentTLS("alice"))
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","password":"hunter2"}}}`
	if resp, data, err := rpc(t, ctx, alice, mcpURL(e, "demo"), body, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("allowed call: %v %s", err, data)
	}
	rpc(t, ctx, alice, mcpURL(e, "demo"), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":{}}}`, nil)

	recs, _, err := audit.Tail(filepath.Join(v.dataDir, "audit.jsonl"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var allowed, denied *audit.Record
	for i := range recs {
		switch {
		case recs[i].Target == "echo":
			allowed = &recs[i]
		case recs[i].Target == "add_note":
			denied = &recs[i]
		}
	}
	if allowed == nil || allowed.Decision != "allow" || allowed.Agent != "spiffe://airlock.local/agent/alice" ||
		allowed.Arguments["password"] != audit.Redacted || allowed.Arguments["text"] != "hi" || allowed.PolicyRevision == "" {
		t.Errorf("record of the allowed call = %+v", allowed)
	}
	if denied == nil || denied.Decision != "deny" || !strings.Contains(denied.Reason, "not granted") {
		t.Errorf("record of the denied call = %+v", denied)
	}
}

func TestAuditFailureDenies(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this machine")
	}
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, func(c *edge.Config) { c.AuditFile = "/dev/full" })
	up := v.startUpstream(true)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	resp, body, err := rpc(t, testContext(t), httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), echoCall(1, "x"), nil)
	if err != nil || !strings.Contains(string(body), "could not be written to the audit log") {
		t.Errorf("call with a full audit disk = %v %v %s, want denied", resp, err, body)
	}
	if up.rec.requests.Load() != 0 {
		t.Error("a request whose decision was not recorded reached the upstream")
	}
}

// pluginConfig builds the plugin program in pkg (once per test binary)
// and returns its configuration, checksum included.
func pluginConfig(t *testing.T, name, pkg string) plugin.Config {
	t.Helper()
	path := buildProgram(t, pkg, name)
	sum, err := plugin.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return plugin.Config{Name: name, Path: path, SHA256: sum}
}

func TestPluginVetoesThroughTheChain(t *testing.T) {
	argguard := pluginConfig(t, "argguard", "../plugins/argguard")
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, func(c *edge.Config) {
		c.Plugins = []plugin.Config{argguard}
	})
	up := v.startUpstream(false)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	ctx := testContext(t)
	cs := connectMCP(t, httpClient(t, v.agentTLS("alice")), mcpURL(e, "demo"), nil)

	if got := textOf(t, call(t, cs, "echo", map[string]any{"text": "fine"})); got != "fine" {
		t.Errorf("echo = %q", got)
	}
	calls := up.stats.Calls()
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "AKIAABCDEFGHIJKLMNOP"}})
	if err == nil || !strings.Contains(err.Error(), "argument text carries an AWS access key (plugin argguard)") {
		t.Errorf("echo of an access key = %v, want the plugin's reason", err)
	}
	if up.stats.Calls() != calls {
		t.Error("a call the plugin vetoed reached the upstream")
	}
	recs, _, _ := audit.Tail(filepath.Join(v.dataDir, "audit.jsonl"), 0)
	if last := recs[len(recs)-1]; last.Decision != "deny" || !slices.Contains(last.Plugins, "argguard: deny") {
		t.Errorf("audit record of the veto = %+v", last)
	}
}

// TestFaultsDeny: a policy that fails while evaluating, and a plugin
// that crashes, hangs, fails or answers without a verdict, deny the
// request within the deadline; nothing reaches the upstream, and once the
// plugin is back an ordinary call goes through.
func TestFaultsDeny(t *testing.T) {
	faulty := pluginConfig(t, "faulty", "../pkg/plugin/testdata/faulty")
	v := newEnv(t)
	// Everything is allowed, but for one tool the policy divides by zero.
	const rego = `package airlock.authz

allow if not input.mcp.tool == "policy_error"

allow if {
	input.mcp.tool == "policy_error"
	1 / count(object.get(input, "nothing", [])) > 0
}
`
	writePolicy(t, v.dataDir, rego)
	plugins := []plugin.Config{faulty}
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}},
		func(c *edge.Config) { c.Plugins = plugins })
	up := v.startUpstream(true)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	client := httpClient(t, v.agentTLS("alice"))
	url := mcpURL(e, "demo")
	ctx := testContext(t)

	tests := []struct {
		name, tool, reason string
	}{
		{"policy evaluation error", "policy_error", "the policy could not decide"},
		{"plugin crash", "crash", "plugin faulty failed"},
		{"plugin hang", "hang", "plugin faulty failed"},
		{"plugin error", "error", "plugin faulty failed"},
		{"plugin answer without a verdict", "malformed", "no verdict"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Start from a plugin that serves: while it restarts after the
			// previous case, a call would be denied for that reason instead.
			waitFor(t, "an ordinary call to go through", func() bool {
				return oneEcho(t, ctx, client, url, i).ok()
			})
			before := up.rec.requests.Load()
			call := fmt.Sprintf(
				`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`,
				i+1,
				tt.tool,
			)
			start := time.Now()
			resp, body, err := rpc(t, ctx, client, url, call, nil)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			msg := checkRPCError(t, resp, body, http.StatusOK, airmcp.CodeDenied)
			if !strings.Contains(msg, tt.reason) {
				t.Errorf("denial %q, want it to say %q", msg, tt.reason)
			}
			if up.rec.requests.Load() != before {
				t.Error("the request reached the upstream")
			}
			// The plugin's deadline is 250 ms and the policy's 1 s; the
			// bound leaves room for a loaded machine, not for waiting on a
			// hung process.
			if took > 3*time.Second {
				t.Errorf("the denial took %s", took)
			}
		})
	}
	waitFor(t, "the plugin to serve again", func() bool {
		return oneEcho(t, ctx, client, url, 99).ok()
	})
}

func TestPolicyFromSignedBundleServer(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	sign := func(tool string) []byte {
		return policytest.SignedBundle(t, "package airlock.authz\n\nallow if input.mcp.kind != \"request\"\n\n"+
			"allow if input.mcp.method != \"tools/call\"\n\nallow if input.mcp.tool == \""+tool+"\"\n", key)
	}
	var served atomic.Value
	served.Store(sign("echo"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(served.Load().([]byte)) }))
	t.Cleanup(srv.Close)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "signer.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)

	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, func(c *edge.Config) {
		c.PolicyBundle = &edge.BundleSource{URL: srv.URL, PublicKeyFile: keyFile, Poll: 50 * time.Millisecond}
		c.PolicyDir = ""
		c.PolicyReloadInterval = 20 * time.Millisecond
	})
	up := v.startUpstream(true)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: up.url}}, nil)
	ctx := testContext(t)
	client := httpClient(t, v.agentTLS("alice"))
	if r := oneEcho(t, ctx, client, mcpURL(e, "demo"), 1); !r.ok() {
		t.Fatalf("echo under the bundle that allows it: %+v", r)
	}
	// The server publishes a bundle that no longer allows echo.
	served.Store(sign("read_file"))
	waitFor(t, "the new bundle to take effect", func() bool {
		_, body, _ := rpc(t, ctx, client, mcpURL(e, "demo"), echoCall(2, "x"), nil)
		return strings.Contains(string(body), "denied by policy")
	})
}

// hostileUpstream answers every POST to /<n> with the canned answer n,
// as a broken or hostile MCP server might.
func hostileUpstream(t *testing.T, answers []func(w http.ResponseWriter)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(r.URL.Path, "/%d", &n)
		answers[n](w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func sse(status int, events ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(status)
		for _, ev := range events {
			io.WriteString(w, ev)
		}
	}
}

func jsonAnswer(status int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// TestHostileAnswersScreened: what the upstream sends back is parsed as
// strictly as what agents send; nothing reaches the agent that the edge
// read differently from a client, and no list leaks unfiltered.
func TestHostileAnswersScreened(t *testing.T) {
	const secret = "secret_tool"
	list := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"` + secret + `","inputSchema":{"type":"object"}}]}}`
	elicit := `{"jsonrpc":"2.0","id":"s1","m\u0065thod":"elicitation/create","params":{"message":"PWNED","requestedSchema":{"type":"object"}}}`
	cases := map[string]func(w http.ResponseWriter){
		"case-variant key": sse(200, "event: message\ndata: "+strings.Replace(list, `"result"`, `"Method":"x","result"`, 1)+"\n\n"),
		"error null":       jsonAnswer(200, strings.Replace(list, `"result"`, `"error":null,"result"`, 1)),
		"status 201 JSON":  jsonAnswer(201, list),
		"status 201 SSE":   sse(201, "data: "+list+"\n\n"),
		"multi-line data":  sse(200, "data: "+list[:40]+"\ndata: "+list[40:]+"\n\n"),
		"escaped method":   sse(200, "data: "+elicit+"\n\n", "data: "+list+"\n\n"),
		"request as JSON":  jsonAnswer(200, elicit),
		"bare CR":          sse(200, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\rdata: "+elicit+"\n\n"),
		"batch answer":     jsonAnswer(200, "["+list+"]"),
		"not JSON at all":  jsonAnswer(200, "PWNED "+secret),
		"list as text":     func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain"); io.WriteString(w, list) },
	}
	v := newEnv(t)
	examplePolicy(t, v, `{"grants": {"tools": {"alice": ["echo"]}}}`)
	deny := "package airlock.authz\n\ndeny contains \"no elicitation\" if input.mcp.method == \"elicitation/create\"\n"
	os.WriteFile(filepath.Join(v.dataDir, "policy", "deny.rego"), []byte(deny), 0o644)
	var names []string
	for name := range cases {
		names = append(names, name)
	}
	slices.Sort(names)
	answers := make([]func(http.ResponseWriter), len(names))
	var resources []edge.Resource
	var upstreams []connector.Resource
	for i, name := range names {
		answers[i] = cases[name]
		res := fmt.Sprintf("r%d", i)
		resources = append(resources, edge.Resource{Name: res, Connectors: []string{"c1"}})
		upstreams = append(upstreams, connector.Resource{Name: res})
	}
	base := hostileUpstream(t, answers)
	for i := range upstreams {
		upstreams[i].URL = fmt.Sprintf("%s/%d", base, i)
	}
	e := v.startEdge(resources, nil)
	v.startConnector(e, "c1", upstreams, nil)
	client := httpClient(t, v.agentTLS("alice"))
	ctx := testContext(t)

	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			_, body, err := rpc(t, ctx, client, mcpURL(e, fmt.Sprintf("r%d", i)), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), secret) || strings.Contains(string(body), "PWNED") {
				t.Errorf("the agent got %s", body)
			}
		})
	}
}

// TestServerRequestOnGETStreamDecided: a request of the server on the
// standalone GET stream is decided like one on a POST stream.
func TestServerRequestOnGETStreamDecided(t *testing.T) {
	elicit := `{"jsonrpc":"2.0","id":"s1","method":"elicitation/create","params":{"message":"PWNED","requestedSchema":{"type":"object"}}}`
	note := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"still here"}}`
	v := newEnv(t)
	examplePolicy(t, v, `{"grants": {"tools": {}}}`)
	deny := "package airlock.authz\n\ndeny contains \"no elicitation\" if input.mcp.method == \"elicitation/create\"\n"
	os.WriteFile(filepath.Join(v.dataDir, "policy", "deny.rego"), []byte(deny), 0o644)
	url := hostileUpstream(t, []func(http.ResponseWriter){sse(200, "data: "+elicit+"\n\n", "data: "+note+"\n\n")})
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	v.startConnector(e, "c1", []connector.Resource{{Name: "demo", URL: url + "/0"}}, nil)
	client := httpClient(t, v.agentTLS("alice"))

	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, mcpURL(e, "demo"), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "PWNED") || !strings.Contains(string(body), "still here") {
		t.Errorf("GET stream delivered %q, want the notification and not the denied request", body)
	}
	recs, _, _ := audit.Tail(filepath.Join(v.dataDir, "audit.jsonl"), 0)
	var sawDenial bool
	for _, r := range recs {
		sawDenial = sawDenial || (r.Direction == "server_to_client" && r.Method == "elicitation/create" && r.Decision == "deny")
	}
	if !sawDenial {
		t.Error("no audit record of the denied server request")
	}
}
