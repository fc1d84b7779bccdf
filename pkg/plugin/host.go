package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	hplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlockhq/airlock/pkg/logkey"
)

// DefaultTimeout bounds every call to a plugin.
const DefaultTimeout = 250 * time.Millisecond

// Config is one plugin of the edge's configuration.
type Config struct {
	// Name identifies the plugin in decisions and logs.
	Name string `yaml:"name"`
	// Path is the plugin's executable.
	Path string `yaml:"path"`
	// Args are passed to it.
	Args []string `yaml:"args"`
	// SHA256 is the hex SHA-256 of the executable; a binary that does not
	// match is never started. Required.
	SHA256 string `yaml:"sha256"`
	// Timeout bounds each call. Default 250ms.
	Timeout time.Duration `yaml:"timeout"`
	// Procs is how many processors the plugin's Go runtime uses
	// (GOMAXPROCS). Default 1: a plugin's work per call is small, and one
	// processor spares each call the hand-offs between threads that
	// otherwise dominate its latency. Raise it for a plugin that computes
	// much per call under concurrent load.
	Procs int `yaml:"procs"`
}

// Restart backoff of a plugin that exited.
const (
	restartInitial = 100 * time.Millisecond
	restartMax     = 5 * time.Second
)

// running is one plugin process and its supervisor's state.
type running struct {
	cfg    Config
	logger *slog.Logger

	// mu guards the fields below.
	mu       sync.Mutex
	client   *hplugin.Client
	rpc      *client
	desc     Description
	downErr  error // why it is not running
	retryAt  time.Time
	backoff  time.Duration
	starting bool // a restart is under way
	closed   bool // Close was called: start nothing more
}

// Host runs the edge's plugins. It is safe for concurrent use.
type Host struct {
	plugins []*running
	logger  *slog.Logger
}

// Start checks and starts every plugin. A plugin whose binary does not
// match its checksum, or that fails the handshake, is an error.
func Start(cfgs []Config, logger *slog.Logger) (*Host, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Host{logger: logger.With(logkey.Component, "plugin")}
	for _, c := range cfgs {
		if c.Timeout == 0 {
			c.Timeout = DefaultTimeout
		}
		r := &running{cfg: c, logger: h.logger.With("plugin", c.Name), backoff: restartInitial}
		if err := r.start(); err != nil {
			h.Close()
			return nil, fmt.Errorf("starting plugin %s: %w", c.Name, err)
		}
		h.plugins = append(h.plugins, r)
	}
	return h, nil
}

// checksum returns the SHA-256 the config names, or an error.
func (c Config) checksum() ([]byte, error) {
	sum, err := hex.DecodeString(c.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not a hex SHA-256 (sha256sum %s)", c.SHA256, c.Path)
	}
	return sum, nil
}

// start launches the process and asks it what it does.
func (r *running) start() error {
	sum, err := r.cfg.checksum()
	if err != nil {
		return err
	}
	cmd := exec.Command(r.cfg.Path, r.cfg.Args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", procsEnv, max(r.cfg.Procs, 1)))
	cl := hplugin.NewClient(&hplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          hplugin.PluginSet{pluginName: &grpcPlugin{}},
		Cmd:              cmd,
		SecureConfig:     &hplugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		AllowedProtocols: []hplugin.Protocol{hplugin.ProtocolGRPC},
		AutoMTLS:         true,
		GRPCDialOptions:  dialOptions,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off}),
		SyncStderr:       &logWriter{logger: r.logger},
		StartTimeout:     5 * time.Second,
	})
	rpc, err := cl.Client()
	if err != nil {
		cl.Kill()
		return err
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		cl.Kill()
		return err
	}
	c := raw.(*client)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var desc Description
	if err := c.call(ctx, "Describe", &empty{}, &desc); err != nil {
		cl.Kill()
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cl.Kill()
		return errors.New("the host was closed while the plugin started")
	}
	r.client, r.rpc, r.desc, r.downErr = cl, c, desc, nil
	r.mu.Unlock()
	r.logger.Info("plugin started", "enrich", desc.Enrich, "decide", desc.Decide)
	return nil
}

// logWriter passes a plugin's stderr to the edge's log.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	w.logger.Warn("plugin stderr", "line", string(p))
	return len(p), nil
}

// errRestarting is why a plugin that exited is not asked.
var errRestarting = errors.New("the plugin is not running; it is being restarted")

// conn returns the plugin's client, restarting an exited process when
// its backoff allows.
func (r *running) conn() (*client, Description, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, r.desc, r.downErr
	}
	if r.client != nil && !r.client.Exited() {
		return r.rpc, r.desc, nil
	}
	if r.client != nil {
		r.rpc.close()
		r.client.Kill()
		r.client, r.rpc = nil, nil
		r.downErr = errRestarting
		r.retryAt = time.Now().Add(r.backoff)
		r.logger.Error("plugin exited; restarting with backoff", "backoff", r.backoff)
	}
	if r.starting || r.closed || time.Now().Before(r.retryAt) {
		return nil, r.desc, r.downErr
	}
	r.starting = true
	r.retryAt = time.Now().Add(r.backoff)
	r.backoff = min(r.backoff*2, restartMax)
	go func() {
		err := r.start()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.starting = false
		if err != nil {
			r.logger.Error("plugin restart failed", logkey.Error, err)
			r.downErr = fmt.Errorf("restarting: %w", err)
			return
		}
		r.backoff = restartInitial
	}()
	return nil, r.desc, r.downErr
}

// failed handles a failed call on client c: a process that died is
// restarted at the next call; one that missed its deadline is killed in
// the background (go-plugin gives it time to exit, which the request must
// not wait for) and restarted with backoff.
func (r *running) failed(c *client, timedOut bool, err error) {
	if !timedOut {
		return
	}
	r.mu.Lock()
	cl := r.client
	if cl == nil || r.rpc != c {
		r.mu.Unlock()
		return // already replaced: never kill a fresh process for an old one's fault
	}
	r.client, r.rpc = nil, nil
	r.downErr = errRestarting
	r.retryAt = time.Now().Add(r.backoff)
	r.mu.Unlock()
	r.logger.Error("plugin missed its deadline; killing it", logkey.Error, err)
	c.close()
	go cl.Kill()
}

// timedOut reports whether a call failed because the plugin missed its
// own deadline (call, derived from parent). A call cut short because the
// request itself ended (the agent went away) is not the plugin's fault:
// it must not cost every other agent a plugin restart.
func timedOut(parent, call context.Context, err error) bool {
	if err == nil || parent.Err() != nil {
		return false
	}
	return call.Err() != nil || status.Code(err) == codes.DeadlineExceeded ||
		errors.Is(err, context.DeadlineExceeded)
}

// current returns the client of the running process, nil if none.
func (r *running) current() *client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rpc
}

// Outcome is what the plugins made of one request.
type Outcome struct {
	// Denied is true when a plugin denied, failed or could not be asked.
	Denied bool
	// Reason says which plugin denied and why.
	Reason string
	// Verdicts are "name: verdict" for the audit record.
	Verdicts []string
}

// Enrich asks every enriching plugin for attributes; the result maps each
// plugin's name to what it returned. A failing plugin is an error: the
// edge denies rather than decide without the context it expects.
func (h *Host) Enrich(ctx context.Context, input map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for _, r := range h.plugins {
		c, desc, err := r.conn()
		if err == nil && !desc.Enrich {
			continue
		}
		var resp *laneResponse
		late := false
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			resp, err = c.exchange(cctx, &laneRequest{Method: "Enrich", Input: input})
			late = timedOut(ctx, cctx, err)
			cancel()
		}
		if err != nil {
			r.failed(c, late, err)
			return nil, fmt.Errorf("plugin %s: %w", r.cfg.Name, err)
		}
		out[r.cfg.Name] = resp.Context
	}
	return out, nil
}

// Decide asks every deciding plugin about a request the policy allowed.
// Any Deny, error, timeout or unreadable verdict denies.
func (h *Host) Decide(ctx context.Context, input map[string]any, policy PolicyDecision) Outcome {
	var o Outcome
	for _, r := range h.plugins {
		c, desc, err := r.conn()
		if err == nil && !desc.Decide {
			continue
		}
		var v Verdict
		late := false
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			var resp *laneResponse
			req := &laneRequest{Method: "Decide", Input: input, Policy: policy}
			resp, err = c.exchange(cctx, req)
			if err == nil && resp.Verdict != nil {
				v = *resp.Verdict
			}
			late = timedOut(ctx, cctx, err)
			cancel()
		}
		switch {
		case err != nil:
			r.failed(c, late, err)
			o.Verdicts = append(o.Verdicts, r.cfg.Name+": error")
			o.deny(fmt.Sprintf("plugin %s failed, so the request is denied", r.cfg.Name))
			r.logger.Warn("plugin call failed", logkey.Error, err)
		case v.Verdict == Allow || v.Verdict == Abstain:
			o.Verdicts = append(o.Verdicts, r.cfg.Name+": "+v.Verdict)
		case v.Verdict == Deny:
			o.Verdicts = append(o.Verdicts, r.cfg.Name+": deny")
			o.deny(fmt.Sprintf("%s (plugin %s)", v.Reason, r.cfg.Name))
		default:
			o.Verdicts = append(o.Verdicts, r.cfg.Name+": malformed")
			o.deny(fmt.Sprintf(
				"plugin %s answered %q, which is no verdict, so the request is denied",
				r.cfg.Name,
				v.Verdict,
			))
		}
	}
	return o
}

func (o *Outcome) deny(reason string) {
	if !o.Denied {
		o.Denied, o.Reason = true, reason
	}
}

// Len returns how many plugins the host runs.
func (h *Host) Len() int {
	if h == nil {
		return 0
	}
	return len(h.plugins)
}

// Close stops every plugin process.
func (h *Host) Close() {
	if h == nil {
		return
	}
	for _, r := range h.plugins {
		r.mu.Lock()
		r.closed = true
		if r.client != nil {
			r.rpc.close()
			r.client.Kill()
		}
		r.client, r.rpc = nil, nil
		r.downErr = errors.New("the plugin host is closed")
		r.mu.Unlock()
	}
}

// FileSHA256 returns the hex SHA-256 of a file, for a plugin's sha256.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
