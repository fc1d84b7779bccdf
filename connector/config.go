package connector

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/config"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// Config is the connector's configuration file. The zero value of a field
// means its default.
type Config struct {
	// Name is the connector's name; its certificate must name the same
	// connector. Required.
	Name string `yaml:"name"`
	// Edges are the edges' tunnel addresses (host:port, UDP). Required.
	Edges []string `yaml:"edges"`
	// ServerName is the name the edges' certificates are checked against.
	// Default: the host part of each edge address.
	ServerName string `yaml:"server_name"`
	// DataDir keeps the connector's enrolled credential (identity.pem,
	// ca.pem), which it renews by itself at about two thirds of its
	// lifetime. The first start enrolls with a join token
	// (`airlock connector --token`). Use either data_dir or the three
	// files below.
	DataDir string `yaml:"data_dir"`
	// EnrollURL is the edge's front door for enrollment, renewal and
	// trust-bundle updates. Default https://<first edge address>.
	EnrollURL string `yaml:"enroll_url"`
	// CAFile is the PEM bundle of trusted Airlock roots, with CertFile
	// and KeyFile: a certificate issued elsewhere (`airlock admin issue`),
	// which the connector never renews.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the connector's certificate chain and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Connections is how many QUIC connections the connector keeps to each
	// edge address. Default 2.
	Connections int `yaml:"connections"`
	// Resources are the upstream MCP servers this connector serves.
	// Required.
	Resources []Resource `yaml:"resources"`
	// QUIC tunes the tunnel transport; see [tunnel.QUICSettings].
	QUIC tunnel.QUICSettings `yaml:"quic"`
	// Backoff paces redials after a lost or refused connection.
	Backoff Backoff `yaml:"backoff"`
	// DrainGrace is how long in-flight requests may run after SIGTERM
	// before the connector closes its tunnels. Default 30s.
	DrainGrace time.Duration `yaml:"drain_grace"`
}

// Resource is one upstream MCP server behind the connector: a Streamable
// HTTP server at URL, or a stdio server that the connector starts with
// Command and bridges to Streamable HTTP (MCP 2025-11-25, transports).
// Exactly one of URL and Command is set.
type Resource struct {
	// Name is the resource name agents use: /mcp/<name> on the edge.
	Name string `yaml:"name"`
	// URL is the Streamable HTTP endpoint of the MCP server. The connector
	// only ever sends requests here; the edge names resources, never URLs.
	URL string `yaml:"url"`
	// CAFile, if set, is the PEM bundle that verifies an https upstream;
	// default the system roots. Only with URL.
	CAFile string `yaml:"ca_file"`

	// Command is the program of a stdio MCP server: an absolute path, a
	// path relative to the config file's folder, or a name found in PATH
	// when the config is loaded ([LoadConfig] stores the absolute path it
	// found). The process runs as the connector's user, with the
	// connector's rights. The connector starts one process per MCP
	// session (on initialize) and one per request that comes without a
	// session (stateless MCP 2026-07-28 traffic).
	Command string `yaml:"command"`
	// Args are the command's arguments.
	Args []string `yaml:"args"`
	// Env adds variables to the process's environment, which otherwise
	// holds only the connector's own values of the variables in
	// [ChildEnv].
	Env map[string]string `yaml:"env"`
	// Dir is the process's working directory, resolved against the config
	// file's folder. Default the connector's working directory.
	Dir string `yaml:"dir"`
	// MaxProcesses caps the processes of this resource running at once;
	// an initialize (or a stateless request) over the cap is refused with
	// HTTP 503 and Retry-After. Default 16.
	MaxProcesses int `yaml:"max_processes"`
	// MaxProcessesPerAgent caps the processes one agent (the identity the
	// edge's assertion names) may run of this resource at once, so that
	// one agent cannot take every slot. Default: max_processes.
	MaxProcessesPerAgent int `yaml:"max_processes_per_agent"`
	// IdleTimeout stops a session's process once the session has had no
	// POST in flight for this long (an open GET stream does not count);
	// until the session's first request after initialize, at most 1m
	// applies. Default 10m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// ChildEnv names the variables of the connector's environment that a
// stdio server inherits; nothing else passes, so that secrets in the
// connector's environment stay there. [Resource.Env] adds to these.
var ChildEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ",
	"LANG", "LC_ALL", "LC_CTYPE", "SYSTEMROOT",
}

// Backoff paces redials: the n-th wait is uniform in
// [0, min(Max, Initial*2^n)] (full jitter), and n starts over once a
// connection has stayed up for ResetAfter.
type Backoff struct {
	// Initial is the first backoff ceiling. Default 100ms.
	Initial time.Duration `yaml:"initial"`
	// Max caps the ceiling. Default 1s, so that a restarted edge is
	// served again within a second.
	Max time.Duration `yaml:"max"`
	// ResetAfter is how long a connection must stay up for the next loss
	// to start again from Initial. Default 30s.
	ResetAfter time.Duration `yaml:"reset_after"`
}

// Defaults of [Config].
const (
	DefaultConnections = 2
	DefaultDrainGrace  = 30 * time.Second
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = time.Second
	DefaultResetAfter  = 30 * time.Second
	// DefaultMaxProcesses and DefaultIdleTimeout apply to command
	// resources.
	DefaultMaxProcesses = 16
	DefaultIdleTimeout  = 10 * time.Minute
)

// LoadConfig reads a connector configuration file strictly, resolves
// relative file paths against the file's folder, applies the overrides
// (the command line's flags), fills in the defaults and validates the
// result.
func LoadConfig(file string, overrides ...func(*Config)) (Config, error) {
	var c Config
	if err := config.Load(file, &c); err != nil {
		return Config{}, err
	}
	for _, p := range []*string{&c.CAFile, &c.CertFile, &c.KeyFile, &c.DataDir} {
		*p = config.Resolve(file, *p)
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		r.CAFile = config.Resolve(file, r.CAFile)
		r.Dir = config.Resolve(file, r.Dir)
		// A bare name is looked up in PATH now, so that what runs does not
		// change with the connector's PATH later; a relative path is
		// relative to the config file, like every other path in it.
		r.Command = resolveCommand(file, r.Command)
	}
	for _, o := range overrides {
		o(&c)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", file, err)
	}
	return c, nil
}

// resolveCommand returns the absolute path of a command named in the
// config file: a path is resolved against the file's folder, a bare
// name is looked up in PATH. A name not found stays as it is, for
// Validate to report.
func resolveCommand(file, command string) string {
	if command == "" {
		return ""
	}
	if strings.ContainsRune(command, filepath.Separator) {
		return config.Resolve(file, command)
	}
	found, err := exec.LookPath(command)
	if err != nil {
		return command
	}
	if abs, err := filepath.Abs(found); err == nil {
		return abs
	}
	return command
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.EnrollURL == "" {
		c.EnrollURL = defaultEnrollURL(c.Edges)
	}
	if c.Connections == 0 {
		c.Connections = DefaultConnections
	}
	if c.DrainGrace == 0 {
		c.DrainGrace = DefaultDrainGrace
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = DefaultBackoff
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = DefaultMaxBackoff
	}
	if c.Backoff.ResetAfter == 0 {
		c.Backoff.ResetAfter = DefaultResetAfter
	}
	c.QUIC = c.QUIC.WithDefaults(tunnel.DefaultConnectorStreams)
	// The caller's slice stays as it was.
	c.Resources = slices.Clone(c.Resources)
	for i := range c.Resources {
		r := &c.Resources[i]
		if r.Command == "" {
			continue
		}
		if r.MaxProcesses == 0 {
			r.MaxProcesses = DefaultMaxProcesses
		}
		if r.MaxProcessesPerAgent == 0 {
			r.MaxProcessesPerAgent = r.MaxProcesses
		}
		if r.IdleTimeout == 0 {
			r.IdleTimeout = DefaultIdleTimeout
		}
	}
	return c
}

// Validate reports every problem at once, naming the keys.
func (c Config) Validate() error {
	var errs []error
	if !certs.ValidName(c.Name) {
		errs = append(errs, fmt.Errorf("name %q is not a valid connector name", c.Name))
	}
	if len(c.Edges) == 0 {
		errs = append(errs, errors.New("edges: at least one edge address is required"))
	}
	for i, e := range c.Edges {
		if _, _, err := net.SplitHostPort(e); err != nil {
			errs = append(errs, fmt.Errorf("edges[%d]: %q is not host:port: %w", i, e, err))
		}
	}
	errs = append(errs, c.validateCredentials()...)
	if c.Connections < 1 || c.Connections > 16 {
		errs = append(errs, fmt.Errorf("connections %d outside 1..16", c.Connections))
	}
	errs = append(errs, c.validateResources()...)
	if c.Backoff.Initial < 0 || c.Backoff.Max < c.Backoff.Initial || c.Backoff.ResetAfter < 0 {
		errs = append(errs, errors.New("backoff: want 0 <= initial <= max and reset_after >= 0"))
	}
	if c.DrainGrace < 0 {
		errs = append(errs, errors.New("drain_grace must not be negative"))
	}
	errs = append(errs, c.QUIC.Validate())
	return errors.Join(errs...)
}

func (c Config) validateCredentials() []error {
	files := c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
	switch {
	case c.DataDir != "" && files:
		return []error{errors.New("data_dir and ca_file/cert_file/key_file exclude each other: use one")}
	case c.DataDir != "":
		u, err := url.Parse(c.EnrollURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return []error{fmt.Errorf("enroll_url %q must be an https URL of the edge's front door", c.EnrollURL)}
		}
		return nil
	case !files:
		return []error{errors.New("data_dir (an enrolled credential) or ca_file, cert_file and key_file is required")}
	}
	return []error{checkFile("ca_file", c.CAFile), checkFile("cert_file", c.CertFile), checkFile("key_file", c.KeyFile)}
}

func (c Config) validateResources() []error {
	var errs []error
	if len(c.Resources) == 0 {
		errs = append(errs, errors.New("resources: at least one resource is required"))
	}
	seen := map[string]bool{}
	for i, r := range c.Resources {
		if !certs.ValidName(r.Name) {
			errs = append(errs, fmt.Errorf("resources[%d].name %q is not a valid resource name", i, r.Name))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("resources[%d].name %q appears twice", i, r.Name))
		}
		seen[r.Name] = true
		errs = append(errs, r.validateUpstream(fmt.Sprintf("resources[%d]", i))...)
	}
	return errs
}

// validateUpstream checks the URL or the command of r; key names r in
// the messages.
func (r Resource) validateUpstream(key string) []error {
	switch {
	case r.URL != "" && r.Command != "":
		return []error{fmt.Errorf("%s: url and command exclude each other: a resource is an HTTP server or a stdio command", key)}
	case r.URL == "" && r.Command == "":
		return []error{fmt.Errorf("%s: url (an HTTP MCP server) or command (a stdio MCP server) is required", key)}
	case r.URL != "":
		return r.validateURL(key)
	}
	return r.validateCommand(key)
}

func (r Resource) validateURL(key string) []error {
	var errs []error
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s.url %q must be an absolute http or https URL", key, r.URL))
	}
	if r.CAFile != "" {
		errs = append(errs, checkFile(key+".ca_file", r.CAFile))
	}
	stdioOnly := []struct {
		key string
		set bool
	}{
		{"args", len(r.Args) > 0},
		{"env", len(r.Env) > 0},
		{"dir", r.Dir != ""},
		{"max_processes", r.MaxProcesses != 0},
		{"max_processes_per_agent", r.MaxProcessesPerAgent != 0},
		{"idle_timeout", r.IdleTimeout != 0},
	}
	for _, f := range stdioOnly {
		if f.set {
			errs = append(errs, fmt.Errorf("%s.%s applies only to a command resource, not to url", key, f.key))
		}
	}
	return errs
}

func (r Resource) validateCommand(key string) []error {
	errs := []error{checkCommand(key+".command", r.Command)}
	if r.CAFile != "" {
		errs = append(errs, fmt.Errorf("%s.ca_file applies only to a url resource, not to command", key))
	}
	if r.Dir != "" {
		if fi, err := os.Stat(r.Dir); err != nil {
			errs = append(errs, fmt.Errorf("%s.dir: %w", key, err))
		} else if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("%s.dir %q is not a folder", key, r.Dir))
		}
	}
	for k := range r.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = append(errs, fmt.Errorf("%s.env: %q is not a valid variable name", key, k))
		}
	}
	if r.MaxProcesses < 1 {
		errs = append(errs, fmt.Errorf("%s.max_processes %d must be at least 1", key, r.MaxProcesses))
	}
	if r.MaxProcessesPerAgent < 1 || r.MaxProcessesPerAgent > r.MaxProcesses {
		errs = append(errs, fmt.Errorf("%s.max_processes_per_agent %d must be 1 to max_processes (%d)",
			key, r.MaxProcessesPerAgent, r.MaxProcesses))
	}
	if r.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.idle_timeout %s must be positive", key, r.IdleTimeout))
	}
	return errs
}

// checkCommand checks that a command exists now: an absolute path must
// be an executable file, anything else must be found in PATH.
func checkCommand(key, command string) error {
	if !filepath.IsAbs(command) {
		if _, err := exec.LookPath(command); err != nil {
			return fmt.Errorf("%s %q is neither an absolute path nor found in PATH: %w", key, command, err)
		}
		return nil
	}
	fi, err := os.Stat(command)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s %q is not an executable file", key, command)
	}
	return nil
}

func checkFile(key, file string) error {
	if file == "" {
		return fmt.Errorf("%s is required", key)
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
