package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/airlockhq/airlock/agent"
	"github.com/airlockhq/airlock/connector"
	"github.com/airlockhq/airlock/internal/localrun"
)

// airlockRun is Airlock deployed as in production, one process per part:
// an edge (`airlock edge`, its CA and state from `airlock edge init`) and
// connectors (`airlock connector`, enrolled with join tokens), so that
// each part can be killed and started again on its own.
type airlockRun struct {
	bin, dir string
	addr     string // the edge's front door (TCP) and tunnel (UDP)
	edge     *exec.Cmd
	conns    []*exec.Cmd // connector-1 first, then idle tunnels
	idle     []string    // config files of the idle connectors
	agent    *agent.Agent
	sessions *agent.Agent // unnarrowed, for the sessions resource
}

// agentName is the benchmark's agent; the policy grants it echo and blob.
const agentName = "bench-agent"

// startAirlock builds airlock, sets up an edge with demo (the benchmark's
// upstream) and sessions (a server with sessions) as resources, a
// connector serving both, and an enrolled agent.
func startAirlock(
	ctx context.Context,
	cache, work, upstream, sessions string,
) (*airlockRun, error) {
	bin := filepath.Join(cache, "bin", "airlock")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/airlock")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building airlock: %v\n%s", err, out)
	}
	a := &airlockRun{bin: bin, dir: filepath.Join(work, "airlock"), addr: freeUDPAndTCP()}
	data := filepath.Join(a.dir, "edge-data")
	if out, err := a.cli(ctx, "edge", "init", "--dir", data); err != nil {
		return nil, fmt.Errorf("airlock edge init: %v\n%s", err, out)
	}
	grants := `{"grants": {"tools": {"` + agentName + `": ["echo", "blob"]}}}`
	grantsFile := filepath.Join(data, "policy", "data.json")
	if err := os.WriteFile(grantsFile, []byte(grants), 0o644); err != nil {
		return nil, err
	}
	edgeConf := fmt.Sprintf(`name: edge
data_dir: %s
listen: %s
ops_listen: "off"
audit_file: %s
resources:
  - name: demo
    connectors: [connector-1]
  - name: sessions
    connectors: [connector-1]
  - name: idle
    connectors: [connector-1]
`, data, a.addr, filepath.Join(a.dir, "audit.jsonl"))
	if err := os.WriteFile(filepath.Join(a.dir, "edge.yaml"), []byte(edgeConf), 0o644); err != nil {
		return nil, err
	}
	// Up to 8192 streams on each of the connector's two tunnels: every
	// open SSE stream holds one, and the 10,000-stream row needs them.
	connConf := fmt.Sprintf(`name: connector-1
edges: [%s]
data_dir: %s
connections: 2
resources:
  - name: demo
    url: %s
  - name: sessions
    url: %s
quic:
  max_incoming_streams: 8192
`, a.addr, filepath.Join(a.dir, "connector-1"), upstream, sessions)
	connFile := filepath.Join(a.dir, "connector.yaml")
	if err := os.WriteFile(connFile, []byte(connConf), 0o644); err != nil {
		return nil, err
	}
	if err := a.startEdge(ctx); err != nil {
		return nil, err
	}
	tok, err := a.joinToken(ctx, "connector", "connector-1")
	if err != nil {
		return nil, err
	}
	c, err := a.startConnector(ctx, filepath.Join(a.dir, "connector.yaml"), tok)
	if err != nil {
		return nil, err
	}
	a.conns = append(a.conns, c)
	tok, err = a.joinToken(ctx, "agent", agentName)
	if err != nil {
		return nil, err
	}
	profile := filepath.Join(a.dir, agentName)
	if out, err := a.cli(ctx, "agent", "enroll", "--edge", "https://"+a.addr, "--token", tok,
		"--dir", profile); err != nil {
		return nil, fmt.Errorf("airlock agent enroll: %v\n%s", err, out)
	}
	// The example policy lets blob through only to tokens narrowed to it.
	if a.agent, err = agent.Open(ctx, profile,
		agent.Options{Scope: "mcp:demo mcp:demo:tools/call:blob"}); err != nil {
		return nil, err
	}
	if a.sessions, err = agent.Open(ctx, profile, agent.Options{}); err != nil {
		return nil, err
	}
	return a, nil
}

// target is Airlock's demo resource as a benchmark target.
func (a *airlockRun) target() *target {
	return &target{name: "Airlock", url: a.url("demo"), client: a.agent.HTTPClient(),
		pids: func() []int { return []int{pid(a.edge), pid(a.conns[0])} }}
}

func (a *airlockRun) url(resource string) string {
	return "https://" + a.addr + "/mcp/" + resource
}

func (a *airlockRun) cli(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, a.bin, append([]string{"--log-level", "warn"}, args...)...).
		CombinedOutput()
}

func (a *airlockRun) joinToken(ctx context.Context, kind, name string) (string, error) {
	out, err := a.cli(ctx, "admin", "--data", filepath.Join(a.dir, "edge-data"), "--json",
		"token", "create", "--kind", kind, "--name", name)
	if err != nil {
		return "", fmt.Errorf("airlock admin token create: %v\n%s", err, out)
	}
	var info struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Token == "" {
		return "", fmt.Errorf("airlock admin token create printed no token: %s", out)
	}
	return info.Token, nil
}

// startEdge starts the edge and waits for its front door.
func (a *airlockRun) startEdge(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, a.bin, "--log-level", "warn", "edge",
		"--config", filepath.Join(a.dir, "edge.yaml"))
	if err := localrun.Start(cmd, filepath.Join(a.dir, "edge.log")); err != nil {
		return err
	}
	a.edge = cmd
	listening := localrun.Await(30*time.Second, 20*time.Millisecond, func() bool {
		c, err := net.Dial("tcp", a.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if !listening {
		log, _ := os.ReadFile(filepath.Join(a.dir, "edge.log"))
		return fmt.Errorf("the edge did not listen within 30s:\n%s", log)
	}
	return nil
}

// startConnector starts a connector from its config file, enrolling it
// with token on its first start.
func (a *airlockRun) startConnector(ctx context.Context, config, token string) (*exec.Cmd, error) {
	args := []string{"--log-level", "warn", "connector", "--config", config}
	if token != "" {
		args = append(args, "--token", token)
	}
	cmd := exec.CommandContext(ctx, a.bin, args...)
	return cmd, localrun.Start(cmd, config+".log")
}

// startMain starts connector-1 again, enrolled already.
func (a *airlockRun) startMain(ctx context.Context) error {
	c, err := a.startConnector(ctx, filepath.Join(a.dir, "connector.yaml"), "")
	if err != nil {
		return err
	}
	a.conns[0] = c
	return nil
}

// enrollIdle enrolls n more connector-1 replicas with one tunnel each,
// serving the idle resource no one calls, as a connector's first start
// would (connector.Enroll) but without starting them: enrollment is apart
// from the measurement, since frp has nothing like it.
func (a *airlockRun) enrollIdle(ctx context.Context, n int) error {
	for i := range n {
		dir := filepath.Join(a.dir, "idle-"+strconv.Itoa(i))
		conf := fmt.Sprintf(`name: connector-1
edges: [%s]
data_dir: %s
connections: 1
resources:
  - name: idle
    url: http://127.0.0.1:9/mcp
`, a.addr, dir)
		file := dir + ".yaml"
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return err
		}
		cfg, err := connector.LoadConfig(file)
		if err != nil {
			return err
		}
		tok, err := a.joinToken(ctx, "connector", "connector-1")
		if err != nil {
			return err
		}
		if err := connector.Enroll(ctx, cfg, tok, slog.New(slog.DiscardHandler)); err != nil {
			return fmt.Errorf("enrolling idle connector %d: %w", i, err)
		}
		a.idle = append(a.idle, file)
	}
	return nil
}

// startIdle starts the enrolled idle connectors.
func (a *airlockRun) startIdle(ctx context.Context) error {
	for _, file := range a.idle {
		c, err := a.startConnector(ctx, file, "")
		if err != nil {
			return err
		}
		a.conns = append(a.conns, c)
	}
	return nil
}

// close stops the agent's renewal and every process, and waits for them.
func (a *airlockRun) close() {
	if a.agent != nil {
		a.agent.Close()
	}
	if a.sessions != nil {
		a.sessions.Close()
	}
	for _, c := range append([]*exec.Cmd{a.edge}, a.conns...) {
		if c != nil {
			kill(c)
		}
	}
}

// kill kills a process as a crash would and waits for it to be gone.
func kill(cmd *exec.Cmd) error {
	if cmd == nil || cmd.Process == nil {
		return errors.New("no process to kill")
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	gone := localrun.Await(10*time.Second, 5*time.Millisecond, func() bool {
		return errors.Is(syscall.Kill(cmd.Process.Pid, 0), syscall.ESRCH) // reaped by localrun
	})
	if !gone {
		return fmt.Errorf("process %d did not exit", cmd.Process.Pid)
	}
	return nil
}

func pid(cmd *exec.Cmd) int {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return cmd.Process.Pid
}

// freeUDPAndTCP returns a loopback address whose port is free for both
// TCP and UDP right now.
func freeUDPAndTCP() string {
	for {
		addr := localrun.FreeAddr()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
}

func pids(cmds []*exec.Cmd) []int {
	var out []int
	for _, c := range cmds {
		out = append(out, pid(c))
	}
	return out
}
