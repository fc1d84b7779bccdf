package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/examples/demoserver"
	"github.com/airlockhq/airlock/pkg/token"
)

// Names used by the local deployment.
const (
	devConnector = "dev-connector"
	devAgent     = "dev-agent"
	devResource  = "demo"
	// devStdioResource is the example stdio server, which the connector
	// runs as `airlock stdio-demo`, one process per MCP session.
	devStdioResource = "notes"
	// devAgentLifetime is long enough for an afternoon of curl: the
	// quickstart renews the agent's certificate while it runs, but curl
	// reads the files only when it starts.
	devAgentLifetime = 12 * time.Hour
)

// devInfo is dev.json: what scripts need to call the local deployment.
// Paths are absolute.
type devInfo struct {
	EdgeURL   string `json:"edge_url"`
	DataDir   string `json:"data_dir"`
	CACert    string `json:"ca_cert"`
	AgentCert string `json:"agent_cert"`
	AgentKey  string `json:"agent_key"`
	// AgentProfile is the agent's folder, what `airlock agent --profile`
	// takes.
	AgentProfile string `json:"agent_profile"`
	// TokenURL is the edge's OAuth token endpoint.
	TokenURL string `json:"token_url"`
	// PolicyDir is the request policy's folder; edits take effect within
	// a second.
	PolicyDir  string            `json:"policy_dir"`
	Resources  map[string]string `json:"resources"`
	MetricsURL string            `json:"metrics_url,omitempty"`
}

// stack is a whole local deployment in one process: CA, edge, connector
// and the demo MCP server.
type stack struct {
	info    devInfo
	edge    *edge.Edge
	conn    *connector.Connector
	agent   *enroll.Holder
	demo    *http.Server
	stopped chan error
	runCtx  context.Context
	cancel  context.CancelFunc
}

type stackOptions struct {
	dir       string
	addr      string
	opsAddr   string
	stateless bool
	// upstream, if set, is the demo resource's MCP endpoint instead of
	// the built-in demo server.
	upstream string
	logger   *slog.Logger
	// stdioCommand runs the example stdio server; empty means this
	// program's stdio-demo command.
	stdioCommand []string
	// Lifetimes for tests; zero means the quickstart's.
	agentCertLifetime   time.Duration
	accessTokenLifetime time.Duration
}

// startStack brings up the deployment in opts.dir, creating the CA on
// first use, and returns once the connector's tunnels are up.
func startStack(ctx context.Context, opts stackOptions) (*stack, error) {
	dir, err := filepath.Abs(opts.dir)
	if err != nil {
		return nil, err
	}
	if _, err := openOrInitCA(filepath.Join(dir, "edge")); err != nil {
		return nil, err
	}
	demoURL, demo, err := startDemo(dir, opts)
	if err != nil {
		return nil, err
	}
	if opts.upstream != "" {
		demoURL = opts.upstream
	}
	s := &stack{demo: demo, stopped: make(chan error, 1)}
	if err := s.startEdge(ctx, dir, opts); err != nil {
		demo.Close()
		return nil, err
	}
	edgeURL := "https://" + s.edge.Addr().String()
	if err := s.startConnector(ctx, dir, demoURL, opts); err != nil {
		s.edge.Shutdown(ctx)
		demo.Close()
		return nil, err
	}
	if s.agent, err = s.enrollAgent(ctx, dir, edgeURL, opts.logger); err != nil {
		s.stop()
		return nil, err
	}
	go (&enroll.Renewer{Holder: s.agent, Logger: opts.logger}).Run(s.runCtx)

	s.info = devInfo{
		EdgeURL:      edgeURL,
		DataDir:      filepath.Join(dir, "edge"),
		CACert:       enroll.BundleFile(s.agent.Dir()),
		AgentCert:    enroll.IdentityFile(s.agent.Dir()),
		AgentKey:     enroll.IdentityFile(s.agent.Dir()),
		AgentProfile: s.agent.Dir(),
		PolicyDir:    filepath.Join(dir, "policy"),
		TokenURL:     edgeURL + token.PathToken,
		Resources: map[string]string{
			devResource:      edgeURL + "/mcp/" + devResource,
			devStdioResource: edgeURL + "/mcp/" + devStdioResource,
		},
	}
	if a := s.edge.OpsAddr(); a != nil {
		s.info.MetricsURL = "http://" + a.String() + "/metrics"
	}
	return s, nil
}

func (s *stack) startEdge(ctx context.Context, dir string, opts stackOptions) error {
	policyDir := filepath.Join(dir, "policy")
	if err := writeExamplePolicy(policyDir, true); err != nil {
		return err
	}
	ec := edge.Config{
		DataDir:       filepath.Join(dir, "edge"),
		PolicyDir:     policyDir,
		Listen:        opts.addr,
		OpsListen:     opts.opsAddr,
		ShutdownGrace: 5 * time.Second,
		Resources: []edge.Resource{
			{Name: devResource, Connectors: []string{devConnector}},
			{Name: devStdioResource, Connectors: []string{devConnector}},
		},
		// The quickstart's agent is curl, which reads its certificate
		// once: give it a working afternoon.
		AgentCertLifetime:   cmp.Or(opts.agentCertLifetime, devAgentLifetime),
		AccessTokenLifetime: opts.accessTokenLifetime,
	}.WithDefaults()
	e, err := edge.New(ec, opts.logger)
	if err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	s.edge = e
	return nil
}

// stop drains the connector, then shuts the edge and the demo server down.
func (s *stack) stop() {
	s.cancel()
	<-s.stopped
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.edge.Shutdown(ctx)
	s.demo.Shutdown(ctx)
}

func openOrInitCA(edgeDir string) (*certs.Authority, error) {
	caDir := edge.CADir(edgeDir)
	ca, err := certs.Load(caDir)
	if errors.Is(err, os.ErrNotExist) {
		return certs.Init(caDir, certs.DefaultTrustDomain)
	}
	return ca, err
}

// startConnector enrolls the connector with a fresh join token, the way
// a real one enrolls on first start, and runs it until stop.
func (s *stack) startConnector(ctx context.Context, dir, demoURL string, opts stackOptions) error {
	logger := opts.logger
	stdio := opts.stdioCommand
	if len(stdio) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this program for the stdio resource: %w", err)
		}
		stdio = []string{exe, "stdio-demo"}
	}
	cc := connector.Config{
		Name:       devConnector,
		Edges:      []string{s.edge.TunnelAddr().String()},
		DataDir:    filepath.Join(dir, "connector"),
		EnrollURL:  "https://" + s.edge.Addr().String(),
		DrainGrace: 5 * time.Second,
		Resources: []connector.Resource{
			{Name: devResource, URL: demoURL},
			{Name: devStdioResource, Command: stdio[0], Args: stdio[1:]},
		},
	}.WithDefaults()
	tok, err := s.edge.CreateJoinToken(edge.TokenRequest{Kind: string(certs.KindConnector), Name: devConnector})
	if err != nil {
		return err
	}
	if err := connector.Enroll(ctx, cc, tok.Token, logger); err != nil {
		return err
	}
	if s.conn, err = connector.New(cc, connector.Options{Logger: logger}); err != nil {
		return err
	}
	s.runCtx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() { s.stopped <- s.conn.Run(s.runCtx) }()
	if err := waitConnected(ctx, s.conn, cc.Connections); err != nil {
		s.cancel()
		<-s.stopped
		return err
	}
	return nil
}

// enrollAgent enrolls the quickstart's agent with a fresh join token into
// DIR/agent, the agent profile that `--profile` takes.
func (s *stack) enrollAgent(ctx context.Context, dir, edgeURL string, logger *slog.Logger) (*enroll.Holder, error) {
	tok, err := s.edge.CreateJoinToken(edge.TokenRequest{Kind: string(certs.KindAgent), Name: devAgent})
	if err != nil {
		return nil, err
	}
	return enroll.Enroll(ctx, enroll.Options{
		EdgeURL: edgeURL,
		Token:   tok.Token,
		Kind:    certs.KindAgent,
		Name:    devAgent,
		Dir:     filepath.Join(dir, "agent"),
		Logger:  logger,
	})
}

func startDemo(dir string, opts stackOptions) (string, *http.Server, error) {
	sandbox := filepath.Join(dir, "sandbox")
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return "", nil, err
	}
	// The example policy lets read_file read public/ and nothing else.
	for name, text := range map[string]string{
		"public/welcome.txt": "Hello from a private folder behind Airlock.\n",
		"private/plan.txt":   "The example policy keeps this file from every agent.\n",
	} {
		file := filepath.Join(sandbox, name)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			os.MkdirAll(filepath.Dir(file), 0o755)
			os.WriteFile(file, []byte(text), 0o644)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("starting demo MCP server: %w", err)
	}
	h := demoserver.Handler(demoserver.Options{SandboxDir: sandbox, Logger: opts.logger}, opts.stateless)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/mcp", srv, nil
}

func waitConnected(ctx context.Context, c *connector.Connector, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.Connected() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the connector's tunnels: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func writeDevInfo(dir string, info devInfo) (string, error) {
	file := filepath.Join(dir, "dev.json")
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return "", err
	}
	return file, os.WriteFile(file, append(data, '\n'), 0o644)
}
