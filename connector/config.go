package connector

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
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

// Resource is one upstream MCP server behind the connector.
type Resource struct {
	// Name is the resource name agents use: /mcp/<name> on the edge.
	Name string `yaml:"name"`
	// URL is the Streamable HTTP endpoint of the MCP server. The connector
	// only ever sends requests here; the edge names resources, never URLs.
	URL string `yaml:"url"`
	// CAFile, if set, is the PEM bundle that verifies an https upstream;
	// default the system roots.
	CAFile string `yaml:"ca_file"`
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
		c.Resources[i].CAFile = config.Resolve(file, c.Resources[i].CAFile)
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
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("resources[%d].url %q must be an absolute http or https URL", i, r.URL))
		}
		if r.CAFile != "" {
			errs = append(errs, checkFile(fmt.Sprintf("resources[%d].ca_file", i), r.CAFile))
		}
	}
	return errs
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
