// Package localrun starts the processes of the project's measuring
// programs (internal/conformance, internal/peerbench) on loopback: any
// program with its output in a log file, and a whole local Airlock
// (`airlock dev`) in front of an upstream of theirs.
package localrun

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Start runs cmd in the background with its output in logFile; it is
// killed when its context ends.
func Start(cmd *exec.Cmd, logFile string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() { cmd.Wait(); f.Close() }()
	return nil
}

// Await calls ready every interval until it reports true, for at most
// limit; it reports whether ready did.
func Await(limit, interval time.Duration, ready func() bool) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(interval) {
		if ready() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Dev is a running `airlock dev`.
type Dev struct {
	// AgentProfile is the profile of its agent, dev-agent.
	AgentProfile string `json:"agent_profile"`
	// Resources are its MCP endpoints by resource name.
	Resources map[string]string `json:"resources"`
	// Cmd is its process.
	Cmd *exec.Cmd `json:"-"`
}

// StartDev runs `airlock dev` from the airlock binary in dir, with
// upstream as its demo resource, logging to dir/../dev.log, and waits for
// its dev.json. A policy already in dir/policy is kept; else dev writes
// its example policy.
func StartDev(ctx context.Context, airlock, dir, upstream string) (*Dev, error) {
	logFile := filepath.Join(filepath.Dir(dir), "dev.log")
	cmd := exec.CommandContext(ctx, airlock, "--log-level", "warn", "dev", "--dir", dir,
		"--addr", FreeAddr(), "--ops-addr", "off", "--upstream", upstream)
	if err := Start(cmd, logFile); err != nil {
		return nil, err
	}
	dev := &Dev{Cmd: cmd}
	started := Await(60*time.Second, 100*time.Millisecond, func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "dev.json"))
		return err == nil && json.Unmarshal(data, dev) == nil && dev.AgentProfile != ""
	})
	if !started {
		log, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("airlock dev did not start within 60s:\n%s", log)
	}
	return dev, nil
}
