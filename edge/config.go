package edge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/config"
	"github.com/airlockhq/airlock/pkg/plugin"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// Config is the edge's configuration file. The zero value of a field means
// its default.
type Config struct {
	// Name is the edge's identity name: spiffe://<domain>/edge/<name>.
	// Default "edge".
	Name string `yaml:"name"`
	// DataDir holds the CA (created by `airlock edge init`) and the QUIC
	// stateless-reset key. Required.
	DataDir string `yaml:"data_dir"`
	// Listen is the HTTPS front door for agents (TCP). Default
	// 127.0.0.1:8443.
	Listen string `yaml:"listen"`
	// TunnelListen is where connectors dial in (UDP). Default: the same
	// address as Listen.
	TunnelListen string `yaml:"tunnel_listen"`
	// OpsListen serves /metrics, /healthz and /readyz over plain HTTP.
	// Default 127.0.0.1:9443; "off" disables it.
	OpsListen string `yaml:"ops_listen"`
	// PublicURL is the URL agents use to reach the front door. Default
	// https://<Listen>.
	PublicURL string `yaml:"public_url"`
	// Hosts are the DNS names and IP addresses in the edge's serving
	// certificate. Default: localhost, 127.0.0.1, ::1 and the hosts of
	// Listen, TunnelListen and PublicURL.
	Hosts []string `yaml:"hosts"`
	// CertLifetime is the lifetime of the serving certificate the edge
	// mints for itself from its CA; it renews it at two thirds. Default 24h.
	CertLifetime time.Duration `yaml:"cert_lifetime"`
	// AgentCertLifetime is the lifetime of the agent certificates the
	// edge issues at enrollment and renewal; agents renew at about two
	// thirds of it. Default 1h, at most 24h.
	AgentCertLifetime time.Duration `yaml:"agent_cert_lifetime"`
	// ConnectorCertLifetime is the same for connectors. Default 24h, at
	// most 720h (30 days).
	ConnectorCertLifetime time.Duration `yaml:"connector_cert_lifetime"`
	// MaxJoinTokenTTL bounds the lifetime of join tokens. Default 24h.
	MaxJoinTokenTTL time.Duration `yaml:"max_join_token_ttl"`
	// AdminSocket is the unix socket of the local admin API (mode 0600;
	// whoever can open it administers the edge). Default
	// <data_dir>/admin.sock; "off" disables it. Remote admins use the
	// front door with an admin certificate instead.
	AdminSocket string `yaml:"admin_socket"`
	// AllowedOrigins are the browser origins that may call MCP endpoints.
	// A request with any other Origin header gets 403 (MCP transport
	// security). Default none.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxBodyBytes bounds a request body; larger ones get 413. Default
	// 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections of agents. Default
	// 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// SessionIdleTimeout forgets an MCP session's routing after this long
	// without a request; its next request gets 404 and the client starts
	// a new session. Default 1h.
	SessionIdleTimeout time.Duration `yaml:"session_idle_timeout"`
	// ShutdownGrace is how long in-flight requests (SSE streams included)
	// may run after SIGTERM. Default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// AccessTokenLifetime is the lifetime of the access tokens the token
	// endpoint issues; agents may ask for shorter. Default 5m, at most 15m.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// TokenSigningAlg is the algorithm of new signing keys: EdDSA or
	// ES256. Default EdDSA, which signs and verifies faster (the edge
	// signs an assertion per request, the connector verifies it). Existing
	// keys keep theirs.
	TokenSigningAlg string `yaml:"token_signing_alg"`
	// PolicyDir is the folder of the request policy: Rego v1 files of
	// package airlock.authz and their data documents (docs/policy.md).
	// Default <data_dir>/policy, which `airlock edge init` creates.
	PolicyDir string `yaml:"policy_dir"`
	// PolicyBundle, if set, pulls the policy as a signed OPA bundle from a
	// bundle server instead of policy_dir (fleets of edges, one source).
	PolicyBundle *BundleSource `yaml:"policy_bundle"`
	// PolicyReloadInterval is how often the edge looks for changed policy
	// files and reloads them. Default 1s.
	PolicyReloadInterval time.Duration `yaml:"policy_reload_interval"`
	// AuditFile receives one JSON line per authorization decision. Default
	// <data_dir>/audit.jsonl; "off" keeps decisions in the log only.
	AuditFile string `yaml:"audit_file"`
	// AuditRedact are the argument keys whose values the audit file never
	// holds (compared ignoring case, at any depth). Default: password,
	// passwd, secret, token, api_key, apikey, authorization, private_key,
	// credentials.
	AuditRedact []string `yaml:"audit_redact"`
	// AuditFailOpen lets requests through when their decision cannot be
	// written to the audit file. Default false: such requests are denied.
	AuditFailOpen bool `yaml:"audit_fail_open"`
	// Plugins are policy plugins (docs/plugins.md): programs the edge
	// starts, checks by SHA-256, and asks about every request. Default none.
	Plugins []plugin.Config `yaml:"plugins"`
	// QUIC tunes the tunnel transport; see [tunnel.QUICSettings].
	QUIC tunnel.QUICSettings `yaml:"quic"`
	// Resources are the MCP resources this edge serves.
	Resources []Resource `yaml:"resources"`
}

// BundleSource is a bundle server the edge pulls its policy from.
type BundleSource struct {
	// URL is the bundle's address. Required.
	URL string `yaml:"url"`
	// PublicKeyFile holds the PEM public key that signs the bundle (OPA
	// bundle signing); unsigned or foreign-signed bundles are refused.
	// Required.
	PublicKeyFile string `yaml:"public_key_file"`
	// Algorithm is the signature algorithm. Default RS256.
	Algorithm string `yaml:"algorithm"`
	// Poll is how often the edge asks for a new bundle. Default 30s.
	Poll time.Duration `yaml:"poll"`
}

// Resource is one MCP endpoint, /mcp/<name>, and the connectors that may
// serve it.
type Resource struct {
	Name string `yaml:"name"`
	// Connectors are the names of the connectors allowed to announce this
	// resource. At least one; a hello announcing a resource for a
	// connector not listed here is refused.
	Connectors []string `yaml:"connectors"`
}

// Defaults of [Config].
const (
	DefaultName                = "edge"
	DefaultListen              = "127.0.0.1:8443"
	DefaultOpsListen           = "127.0.0.1:9443"
	DefaultCertLifetime        = 24 * time.Hour
	DefaultMaxBodyBytes        = 1 << 20
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultSessionIdleTimeout  = time.Hour
	DefaultShutdownGrace       = 30 * time.Second
	DefaultAgentCertLifetime   = time.Hour
	DefaultConnectorLifetime   = 24 * time.Hour
	DefaultMaxJoinTokenTTL     = 24 * time.Hour
	DefaultAccessTokenLifetime = 5 * time.Minute
	// MaxAccessTokenLifetime bounds access_token_lifetime.
	MaxAccessTokenLifetime = 15 * time.Minute
	// MaxAgentCertLifetime bounds agent_cert_lifetime: agents hold no
	// long-lived secret.
	MaxAgentCertLifetime = 24 * time.Hour
	// MinCertLifetime is the shortest certificate lifetime the edge
	// issues. Anything under a few minutes is for tests.
	MinCertLifetime = 2 * time.Second
)

// LoadConfig reads an edge configuration file strictly, resolves a
// relative data_dir against the file's folder, applies the overrides (the
// command line's flags), fills in the defaults and validates the result.
func LoadConfig(file string, overrides ...func(*Config)) (Config, error) {
	var c Config
	if err := config.Load(file, &c); err != nil {
		return Config{}, err
	}
	c.DataDir = config.Resolve(file, c.DataDir)
	if c.PolicyDir != "" {
		c.PolicyDir = config.Resolve(file, c.PolicyDir)
	}
	if c.AuditFile != "" && c.AuditFile != "off" {
		c.AuditFile = config.Resolve(file, c.AuditFile)
	}
	for i := range c.Plugins {
		c.Plugins[i].Path = config.Resolve(file, c.Plugins[i].Path)
	}
	if c.PolicyBundle != nil {
		c.PolicyBundle.PublicKeyFile = config.Resolve(file, c.PolicyBundle.PublicKeyFile)
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

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.Name, DefaultName)
	set(&c.Listen, DefaultListen)
	set(&c.TunnelListen, c.Listen)
	set(&c.OpsListen, DefaultOpsListen)
	set(&c.PublicURL, "https://"+c.Listen)
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setDur(&c.CertLifetime, DefaultCertLifetime)
	setDur(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.SessionIdleTimeout, DefaultSessionIdleTimeout)
	setDur(&c.ShutdownGrace, DefaultShutdownGrace)
	setDur(&c.AgentCertLifetime, DefaultAgentCertLifetime)
	setDur(&c.ConnectorCertLifetime, DefaultConnectorLifetime)
	setDur(&c.MaxJoinTokenTTL, DefaultMaxJoinTokenTTL)
	setDur(&c.AccessTokenLifetime, DefaultAccessTokenLifetime)
	set(&c.TokenSigningAlg, token.AlgEdDSA)
	if c.PolicyBundle != nil {
		b := *c.PolicyBundle
		set(&b.Algorithm, "RS256")
		setDur(&b.Poll, 30*time.Second)
		c.PolicyBundle = &b
		if c.DataDir != "" {
			c.PolicyDir = filepath.Join(c.DataDir, "policy-bundle.tar.gz")
		}
	}
	if c.DataDir != "" {
		set(&c.PolicyDir, filepath.Join(c.DataDir, "policy"))
		set(&c.AuditFile, filepath.Join(c.DataDir, "audit.jsonl"))
	}
	if c.AuditRedact == nil {
		c.AuditRedact = audit.DefaultRedact
	}
	setDur(&c.PolicyReloadInterval, time.Second)
	if c.AdminSocket == "" && c.DataDir != "" {
		c.AdminSocket = AdminSocket(c.DataDir)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if len(c.Hosts) == 0 {
		c.Hosts = defaultHosts(c)
	}
	c.QUIC = c.QUIC.WithDefaults(tunnel.DefaultEdgeStreams)
	return c
}

func defaultHosts(c Config) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	add := func(h string) {
		if h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	for _, a := range []string{c.Listen, c.TunnelListen} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			add(h)
		}
	}
	if u, err := url.Parse(c.PublicURL); err == nil {
		add(u.Hostname())
	}
	return hosts
}

// Validate reports every problem at once, naming the keys.
func (c Config) Validate() error {
	var errs []error
	if !certs.ValidName(c.Name) {
		errs = append(errs, fmt.Errorf("name %q is not a valid edge name", c.Name))
	}
	if c.AccessTokenLifetime < 10*time.Second || c.AccessTokenLifetime > MaxAccessTokenLifetime {
		errs = append(errs, fmt.Errorf("access_token_lifetime %s outside [10s, %s]", c.AccessTokenLifetime, MaxAccessTokenLifetime))
	}
	errs = append(errs, validatePlugins(c.Plugins)...)
	if b := c.PolicyBundle; b != nil {
		if u, err := url.Parse(b.URL); err != nil || u.Host == "" ||
			(u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			errs = append(errs, fmt.Errorf("policy_bundle.url %q must be https (plain http only on loopback)", b.URL))
		}
		if _, err := os.Stat(b.PublicKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("policy_bundle.public_key_file: %w", err))
		}
	}
	if c.TokenSigningAlg != token.AlgES256 && c.TokenSigningAlg != token.AlgEdDSA {
		errs = append(errs, fmt.Errorf("token_signing_alg %q is not %s or %s", c.TokenSigningAlg, token.AlgES256, token.AlgEdDSA))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	} else if _, err := os.Stat(certs.RootFile(caDir(c.DataDir))); err != nil {
		errs = append(errs, fmt.Errorf("data_dir %s holds no CA (run `airlock edge init --dir %s`): %w", c.DataDir, c.DataDir, err))
	}
	for key, addr := range map[string]string{"listen": c.Listen, "tunnel_listen": c.TunnelListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port: %w", key, addr, err))
		}
	}
	if c.OpsListen != "off" {
		if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
			errs = append(errs, fmt.Errorf("ops_listen %q is not host:port or \"off\": %w", c.OpsListen, err))
		}
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
		errs = append(errs, fmt.Errorf("public_url %q must be https://host[:port] without a path", c.PublicURL))
	}
	if c.CertLifetime < time.Minute || c.CertLifetime > certs.MaxLeafLifetime {
		errs = append(errs, fmt.Errorf("cert_lifetime %s outside [1m, %s]", c.CertLifetime, certs.MaxLeafLifetime))
	}
	if c.AgentCertLifetime < MinCertLifetime || c.AgentCertLifetime > MaxAgentCertLifetime {
		errs = append(errs, fmt.Errorf("agent_cert_lifetime %s outside [%s, %s]", c.AgentCertLifetime, MinCertLifetime, MaxAgentCertLifetime))
	}
	if c.ConnectorCertLifetime < MinCertLifetime || c.ConnectorCertLifetime > certs.MaxLeafLifetime {
		errs = append(errs, fmt.Errorf("connector_cert_lifetime %s outside [%s, %s]", c.ConnectorCertLifetime, MinCertLifetime, certs.MaxLeafLifetime))
	}
	if c.MaxJoinTokenTTL < time.Minute || c.MaxJoinTokenTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("max_join_token_ttl %s outside [1m, 168h]", c.MaxJoinTokenTTL))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_body_bytes %d is below 1024", c.MaxBodyBytes))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			errs = append(errs, fmt.Errorf("allowed_origins: %q is not an origin like https://app.example.com", o))
		}
	}
	errs = append(errs, c.validateResources()...)
	errs = append(errs, c.QUIC.Validate())
	return errors.Join(errs...)
}

func (c Config) validateResources() []error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range c.Resources {
		if !certs.ValidName(r.Name) {
			errs = append(errs, fmt.Errorf("resources[%d].name %q is not a valid resource name", i, r.Name))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("resources[%d].name %q appears twice", i, r.Name))
		}
		seen[r.Name] = true
		if len(r.Connectors) == 0 {
			errs = append(errs, fmt.Errorf("resources[%d].connectors: name at least one connector", i))
		}
		for j, n := range r.Connectors {
			if !certs.ValidName(n) {
				errs = append(errs, fmt.Errorf("resources[%d].connectors[%d] %q is not a valid connector name", i, j, n))
			}
		}
	}
	return errs
}

// validatePlugins checks each plugin's name, executable and checksum.
func validatePlugins(list []plugin.Config) []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range list {
		if p.Name == "" || seen[p.Name] {
			errs = append(errs, fmt.Errorf("plugins[%d].name %q is empty or used twice", i, p.Name))
		}
		seen[p.Name] = true
		if _, err := os.Stat(p.Path); err != nil {
			errs = append(errs, fmt.Errorf("plugins[%d].path: %w", i, err))
		}
		if len(p.SHA256) != 64 {
			errs = append(errs, fmt.Errorf("plugins[%d].sha256 must be the 64 hex digits of sha256sum %s", i, p.Path))
		}
		if p.Timeout < 0 {
			errs = append(errs, fmt.Errorf("plugins[%d].timeout must not be negative", i))
		}
	}
	return errs
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
