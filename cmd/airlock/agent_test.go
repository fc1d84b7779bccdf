package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/edge"
	airmcp "github.com/airlockhq/airlock/pkg/mcp"
)

// airlockBinary builds the airlock command once, for tests that run it as
// a subprocess the way an MCP client launches a server.
var airlockBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "airlock-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "airlock")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func buildAirlock(t *testing.T) string {
	t.Helper()
	bin, err := airlockBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startTestStack starts the quickstart's deployment in a temporary folder.
func startTestStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	opts.dir = filepath.Join(t.TempDir(), "dev")
	opts.addr, opts.opsAddr = "127.0.0.1:0", "off"
	if opts.logger == nil {
		opts.logger = slog.New(slog.DiscardHandler)
	}
	s, err := startStack(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// enrollProfile enrolls another profile of the quickstart's agent, for a
// test that must be the only one renewing it.
func enrollProfile(t *testing.T, s *stack) string {
	t.Helper()
	tok, err := s.edge.CreateJoinToken(edge.TokenRequest{Kind: string(certs.KindAgent), Name: devAgent})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "profile")
	_, err = enroll.Enroll(t.Context(), enroll.Options{
		EdgeURL: s.info.EdgeURL, Token: tok.Token, Kind: certs.KindAgent, Name: devAgent, Dir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// auditTokens returns the access token ids the edge recorded decisions
// on resource with, in order of first use. Tokens are per resource.
func auditTokens(t *testing.T, s *stack, resource string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(s.info.DataDir, "audit.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var ids []string
	seen := map[string]bool{}
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var rec struct {
			TokenID  string `json:"token_id"`
			Resource string `json:"resource"`
		}
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Resource == resource &&
			rec.TokenID != "" && !seen[rec.TokenID] {
			seen[rec.TokenID] = true
			ids = append(ids, rec.TokenID)
		}
	}
	return ids
}

// TestAgentBridge runs the go-sdk client over `airlock agent bridge` as a
// subprocess, to the quickstart's HTTP resource and to its stdio
// resource (a process per session behind the connector): initialize,
// list, call, progress, a server-to-client request, a denial, and a
// session that outlives its first access token and its first
// certificate.
func TestAgentBridge(t *testing.T) {
	bin := buildAirlock(t)
	s := startTestStack(t, stackOptions{agentCertLifetime: 15 * time.Second,
		accessTokenLifetime: 10 * time.Second, stdioCommand: []string{bin, "stdio-demo"}})
	tests := []struct {
		resource, server string
		listed, hidden   string
		allowed          string
		allowedArgs      map[string]any
		allowedWant      string
		denied           string
		deniedArgs       map[string]any
		deniedWant       string
		progress         string
		progressArgs     map[string]any
		ask              string
	}{
		{devResource, "airlock-demo", "read_file", "blob",
			"read_file", map[string]any{"path": "public/welcome.txt"}, "Hello",
			"read_file", map[string]any{"path": "private/plan.txt"}, "may only read files under public/",
			"count", map[string]any{"n": 3}, "ask"},
		{devStdioResource, "airlock-stdio-example", "pid", "crash",
			"add_note", map[string]any{"title": "t", "body": "b"}, "saved note t",
			"crash", map[string]any{}, "tool \"crash\" is not granted",
			"slow", map[string]any{"steps": 3, "delay_ms": 10}, "ask_user"},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			t.Parallel()
			profile := enrollProfile(t, s)
			first, err := enroll.Load(profile)
			if err != nil {
				t.Fatal(err)
			}
			firstSerial := first.Credential().Leaf().SerialNumber

			var progress sync.Map
			client := mcp.NewClient(&mcp.Implementation{Name: "bridge-test", Version: "1"}, &mcp.ClientOptions{
				ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
				},
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					progress.Store(req.Params.Progress, true)
				},
			})
			cmd := exec.Command(bin, "--log-level", "warn", "agent", "bridge", "--profile", profile, tt.resource)
			cmd.Stderr = os.Stderr
			ctx := t.Context()
			cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
			if err != nil {
				t.Fatalf("initialize over the bridge: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ServerInfo.Name; got != tt.server {
				t.Errorf("server name over the bridge = %q, want %q", got, tt.server)
			}

			var names []string
			for tool, err := range cs.Tools(ctx, nil) {
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				names = append(names, tool.Name)
			}
			if !slices.Contains(names, tt.listed) || slices.Contains(names, tt.hidden) {
				t.Errorf("tools over the bridge = %v, want %s and not %s (filtered by the policy)",
					names, tt.listed, tt.hidden)
			}

			if got := callText(t, cs, tt.allowed, tt.allowedArgs); !strings.Contains(got, tt.allowedWant) {
				t.Errorf("%s = %q, want %q", tt.allowed, got, tt.allowedWant)
			}
			_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: tt.denied, Arguments: tt.deniedArgs})
			var wire *jsonrpc.Error
			if !errors.As(err, &wire) || wire.Code != airmcp.CodeDenied ||
				!strings.Contains(wire.Message, tt.deniedWant) {
				t.Errorf("%s %v over the bridge = %v, want the policy's denial %q",
					tt.denied, tt.deniedArgs, err, tt.deniedWant)
			}

			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tt.progress,
				Arguments: tt.progressArgs, Meta: mcp.Meta{"progressToken": "p1"}})
			if err != nil || res.IsError {
				t.Fatalf("%s = %v, %v", tt.progress, res, err)
			}
			// The client hands notifications to its handler on its own
			// goroutines: the last may be handled just after the result.
			waitFor(t, "progress 1, 2 and 3 over the bridge", func() bool {
				_, ok1 := progress.Load(1.0)
				_, ok2 := progress.Load(2.0)
				_, ok3 := progress.Load(3.0)
				return ok1 && ok2 && ok3
			})

			if got := callText(t, cs, tt.ask, map[string]any{"question": "favourite colour?"}); !strings.Contains(got, "blue") {
				t.Errorf("%s (elicitation, a server-to-client request) = %q, want blue", tt.ask, got)
			}

			// Keep the session busy until the bridge has refreshed its
			// access token (due after 8 of its 10 seconds) and renewed the
			// certificate (due after 10 of its 15), which needs a token for
			// the new one: three tokens in all for this profile. Every call
			// must keep working.
			deadline := time.Now().Add(45 * time.Second)
			for i := 0; ; i++ {
				if got := callText(t, cs, "echo", map[string]any{"text": fmt.Sprint(i)}); got != fmt.Sprint(i) {
					t.Fatalf("echo %d during the long session = %q", i, got)
				}
				h, err := enroll.Load(profile)
				renewed := err == nil && h.Credential().Leaf().SerialNumber.Cmp(firstSerial) != 0
				tokens := len(auditTokens(t, s, tt.resource))
				if renewed && tokens >= 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %d calls: certificate renewed %t, access tokens used %d; want a "+
						"renewal and a token refresh during the session", i, renewed, tokens)
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
}

func callText(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.IsError {
		t.Fatalf("%s reported an error: %s", name, b.String())
	}
	return b.String()
}

// TestAgentCallExitStatus checks `airlock agent call` for success, a
// policy denial and an unreachable edge: output, stderr and exit status.
func TestAgentCallExitStatus(t *testing.T) {
	s := startTestStack(t, stackOptions{})
	profile := s.info.AgentProfile
	closed := "https://" + freeAddr(t) + "/mcp/demo"
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"success", []string{"demo", "read_file", "path=public/welcome.txt"}, 0,
			"Hello from a private folder behind Airlock."},
		{"json arguments", []string{"demo", "echo", "--args", `{"text":"hi there"}`}, 0, "hi there"},
		{"denied by policy", []string{"demo", "read_file", "path=private/plan.txt"}, exitDenied,
			"denied (-32018): denied by policy: read_file may only read files under public/"},
		{"tool error", []string{"demo", "read_note", "title=nothing-here"}, exitFailed,
			"tool read_note reported an error"},
		{"edge unreachable", []string{closed, "echo", "text=x"}, exitUnreachable, "cannot reach the edge"},
		{"bad argument", []string{"demo", "echo", "n:=nope"}, exitFailed, "is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"agent", "call", "--profile", profile, "--timeout", "20s"}, tt.args...)
			out, err := airlock(t.Context(), args...)
			text := out
			if err != nil {
				text += err.Error()
			}
			if got := exitCode(err); got != tt.wantCode || !strings.Contains(text, tt.wantOut) {
				t.Errorf("airlock agent call %v: exit %d, output %q; want exit %d and %q",
					tt.args, got, text, tt.wantCode, tt.wantOut)
			}
		})
	}
	// The real process: exit status, and what goes to stdout and stderr.
	bin := buildAirlock(t)
	for _, tt := range []struct {
		args               []string
		code               int
		stdout, stderrText string
	}{
		{[]string{"demo", "read_file", "path=public/welcome.txt"}, 0, "Hello from a private folder", ""},
		{[]string{"demo", "read_file", "path=private/plan.txt"}, exitDenied, "",
			"airlock: denied (-32018): denied by policy: read_file may only read files under public/"},
		{[]string{closed, "echo", "text=x"}, exitUnreachable, "", "airlock: cannot reach the edge"},
	} {
		cmd := exec.Command(bin, append([]string{"--log-level", "error", "agent", "call",
			"--profile", profile}, tt.args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		}
		if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) ||
			(tt.stdout == "" && stdout.Len() > 0) || !strings.Contains(stderr.String(), tt.stderrText) {
			t.Errorf("airlock agent call %v: exit %d, stdout %q, stderr %q; want %d, %q, %q",
				tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderrText)
		}
	}

	out, err := airlock(t.Context(), "agent", "tools", "--profile", profile, "demo")
	if err != nil || !strings.Contains(out, "read_file") {
		t.Errorf("airlock agent tools = %v\n%s", err, out)
	}
	out, err = airlock(t.Context(), "agent", "read", "--profile", profile, "demo", "note://nothing")
	if exitCode(err) != exitFailed {
		t.Errorf("airlock agent read of a missing note: exit %d (%v)\n%s", exitCode(err), err, out)
	}
}

// TestAgentProxy reaches the quickstart's resource through `airlock agent
// proxy` with a go-sdk client that has no certificate and no token, and
// checks what the proxy refuses.
func TestAgentProxy(t *testing.T) {
	s := startTestStack(t, stackOptions{})
	addr := freeAddr(t)
	runAirlock(t, "agent", "proxy", "--profile", s.info.AgentProfile, "--listen", addr,
		"--resource", devResource)
	endpoint := "http://" + addr + "/mcp/" + devResource
	waitFor(t, "the proxy", func() bool {
		resp, err := http.Get(endpoint)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	// A local client that sends an Authorization of its own still works:
	// the agent's token replaces it.
	plain := &http.Client{Transport: headerTransport{"Authorization": "Bearer not-a-token"}}
	client := mcp.NewClient(&mcp.Implementation{Name: "proxy-test", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: plain}, nil)
	if err != nil {
		t.Fatalf("initialize through the proxy: %v", err)
	}
	defer cs.Close()
	if got := callText(t, cs, "echo", map[string]any{"text": "via proxy"}); got != "via proxy" {
		t.Errorf("echo through the proxy = %q", got)
	}
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "read_file",
		Arguments: map[string]any{"path": "private/plan.txt"}})
	if wire, ok := agentRefusal(err); !ok || wire.Code != airmcp.CodeDenied {
		t.Errorf("read_file private/plan.txt through the proxy = %v, want the policy's denial", err)
	}

	tests := []struct {
		name       string
		path       string
		header     map[string]string
		wantStatus int
		wantText   string
	}{
		{"foreign origin", "/mcp/demo", map[string]string{"Origin": "https://evil.example"},
			http.StatusForbidden, "not a loopback origin"},
		{"rebinding host", "/mcp/demo", map[string]string{"Host": "evil.example:80"},
			http.StatusForbidden, "not a loopback name"},
		{"resource not served", "/mcp/other", nil, http.StatusNotFound, "for demo"},
		{"not an endpoint", "/oauth/token", nil, http.StatusNotFound, "no MCP endpoint"},
		{"loopback origin", "/mcp/demo", map[string]string{"Origin": "http://localhost:3000"},
			http.StatusOK, "airlock-demo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+tt.path, strings.NewReader(initialize))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tt.header {
				req.Header.Set(k, v)
				if k == "Host" {
					req.Host = v
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantText) {
				t.Errorf("status %d body %s; want %d and %q", resp.StatusCode, body, tt.wantStatus, tt.wantText)
			}
		})
	}

	if _, err := airlock(t.Context(), "agent", "proxy", "--profile", s.info.AgentProfile,
		"--listen", "0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("agent proxy on 0.0.0.0 = %v, want a refusal", err)
	}
}

// headerTransport adds headers to every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range h {
		req.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(req)
}

func agentRefusal(err error) (*jsonrpc.Error, bool) {
	var wire *jsonrpc.Error
	return wire, errors.As(err, &wire)
}
