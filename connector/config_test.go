package connector

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockhq/airlock/pkg/tunnel"
)

// configDir is a folder holding the files a connector config names. The
// files only need to exist: LoadConfig checks paths, not their content.
type configDir struct {
	dir                  string
	ca, cert, key, upsCA string
}

func newConfigDir(t *testing.T) configDir {
	t.Helper()
	dir := t.TempDir()
	d := configDir{
		dir:   dir,
		ca:    filepath.Join(dir, "ca.crt"),
		cert:  filepath.Join(dir, "connector.crt"),
		key:   filepath.Join(dir, "connector.key"),
		upsCA: filepath.Join(dir, "upstream-ca.crt"),
	}
	for _, f := range []string{d.ca, d.cert, d.key, d.upsCA} {
		if err := os.WriteFile(f, []byte("placeholder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// write stores yaml as a config file, after replacing $DIR with the
// folder, and returns its path.
func (d configDir) write(t *testing.T, yaml string) string {
	t.Helper()
	file := filepath.Join(d.dir, "connector.yaml")
	yaml = strings.ReplaceAll(yaml, "$DIR", d.dir)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const minimalConfig = `
name: db
edges: ["edge.example.com:8443"]
ca_file: $DIR/ca.crt
cert_file: $DIR/connector.crt
key_file: $DIR/connector.key
resources:
  - name: files
    url: http://127.0.0.1:8080/mcp
`

func TestLoadConfigDefaults(t *testing.T) {
	d := newConfigDir(t)
	got, err := LoadConfig(d.write(t, minimalConfig))
	if err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	want := Config{
		Name:        "db",
		Edges:       []string{"edge.example.com:8443"},
		EnrollURL:   "https://edge.example.com:8443",
		CAFile:      d.ca,
		CertFile:    d.cert,
		KeyFile:     d.key,
		Connections: 2,
		Resources:   []Resource{{Name: "files", URL: "http://127.0.0.1:8080/mcp"}},
		QUIC:        tunnel.QUICSettings{}.WithDefaults(tunnel.DefaultConnectorStreams),
		Backoff: Backoff{
			Initial:    100 * time.Millisecond,
			Max:        time.Second,
			ResetAfter: 30 * time.Second,
		},
		DrainGrace: 30 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}
	if got.QUIC.MaxIncomingStreams != 4096 {
		t.Errorf("LoadConfig().QUIC.MaxIncomingStreams = %d, want 4096 on a connector",
			got.QUIC.MaxIncomingStreams)
	}
}

func TestLoadConfigFull(t *testing.T) {
	d := newConfigDir(t)
	got, err := LoadConfig(d.write(t, `
name: db
edges: ["10.0.0.1:8443", "[::1]:8443"]
server_name: edge.internal
ca_file: $DIR/ca.crt
cert_file: $DIR/connector.crt
key_file: $DIR/connector.key
connections: 4
resources:
  - name: files
    url: https://files.internal/mcp
    ca_file: $DIR/upstream-ca.crt
  - name: wiki
    url: http://wiki.internal:8080/mcp
quic:
  idle_timeout: 10s
  keep_alive: 2s
backoff:
  initial: 50ms
  max: 5s
  reset_after: 1m
drain_grace: 5s
`))
	if err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	want := Config{
		Name:        "db",
		Edges:       []string{"10.0.0.1:8443", "[::1]:8443"},
		ServerName:  "edge.internal",
		EnrollURL:   "https://10.0.0.1:8443",
		CAFile:      d.ca,
		CertFile:    d.cert,
		KeyFile:     d.key,
		Connections: 4,
		Resources: []Resource{
			{Name: "files", URL: "https://files.internal/mcp", CAFile: d.upsCA},
			{Name: "wiki", URL: "http://wiki.internal:8080/mcp"},
		},
		QUIC: tunnel.QUICSettings{IdleTimeout: 10 * time.Second, KeepAlive: 2 * time.Second}.
			WithDefaults(tunnel.DefaultConnectorStreams),
		Backoff:    Backoff{50 * time.Millisecond, 5 * time.Second, time.Minute},
		DrainGrace: 5 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigRefuses(t *testing.T) {
	tests := []struct {
		name string
		// edit changes the minimal config; it gets the config's text.
		edit func(string) string
		// wantErrs must all appear in the error.
		wantErrs []string
	}{
		{
			name:     "unknown key",
			edit:     appendText("conections: 3\n"),
			wantErrs: []string{"conections", "connector.yaml"},
		},
		{
			name:     "unknown nested key",
			edit:     appendText("backoff:\n  maximum: 3s\n"),
			wantErrs: []string{"maximum", "connector.yaml"},
		},
		{
			name:     "missing certificate file",
			edit:     replace("connector.crt", "missing.crt"),
			wantErrs: []string{"cert_file", "missing.crt", "connector.yaml"},
		},
		{
			name:     "no key file",
			edit:     replace("key_file: $DIR/connector.key", ""),
			wantErrs: []string{"key_file is required"},
		},
		{
			name:     "edge without port",
			edit:     replace("edge.example.com:8443", "edge.example.com"),
			wantErrs: []string{"edges[0]", `"edge.example.com" is not host:port`},
		},
		{
			name:     "no edges",
			edit:     replace(`edges: ["edge.example.com:8443"]`, ""),
			wantErrs: []string{"edges: at least one"},
		},
		{
			name:     "invalid name",
			edit:     replace("name: db", "name: DB"),
			wantErrs: []string{`name "DB"`},
		},
		{
			name:     "too many connections",
			edit:     appendText("connections: 17\n"),
			wantErrs: []string{"connections 17"},
		},
		{
			name:     "duplicate resource",
			edit:     appendText("  - name: files\n    url: http://127.0.0.1:9090/mcp\n"),
			wantErrs: []string{`resources[1].name "files" appears twice`},
		},
		{
			name:     "invalid resource name",
			edit:     replace("name: files", "name: Files/x"),
			wantErrs: []string{"resources[0].name"},
		},
		{
			name:     "relative resource URL",
			edit:     replace("http://127.0.0.1:8080/mcp", "/mcp"),
			wantErrs: []string{"resources[0].url"},
		},
		{
			name:     "non-HTTP resource URL",
			edit:     replace("http://127.0.0.1:8080/mcp", "ftp://127.0.0.1/mcp"),
			wantErrs: []string{"resources[0].url"},
		},
		{
			name:     "missing resource CA file",
			edit:     appendText("    ca_file: $DIR/nope.crt\n"),
			wantErrs: []string{"resources[0].ca_file"},
		},
		{
			name:     "url and command",
			edit:     appendText("    command: /bin/sh\n"),
			wantErrs: []string{"resources[0]: url and command exclude each other"},
		},
		{
			name:     "neither url nor command",
			edit:     replace("    url: http://127.0.0.1:8080/mcp\n", ""),
			wantErrs: []string{"resources[0]: url (an HTTP MCP server) or command (a stdio MCP server) is required"},
		},
		{
			name:     "command not in PATH",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: airlock-no-such-mcp-server"),
			wantErrs: []string{`resources[0].command "airlock-no-such-mcp-server" is neither an absolute path nor found in PATH`, "connector.yaml"},
		},
		{
			name:     "missing absolute command",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: $DIR/no-such-server"),
			wantErrs: []string{"resources[0].command", "no-such-server", "connector.yaml"},
		},
		{
			name:     "command not executable",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: $DIR/ca.crt"),
			wantErrs: []string{"resources[0].command", "is not an executable file"},
		},
		{
			name:     "stdio keys on a url resource",
			edit:     appendText("    args: [\"-v\"]\n    max_processes: 3\n"),
			wantErrs: []string{"resources[0].args applies only to a command resource", "resources[0].max_processes applies only"},
		},
		{
			name:     "command resource with a CA file, a missing dir and bad limits",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: /bin/sh\n    ca_file: $DIR/ca.crt\n    dir: $DIR/nowhere\n    max_processes: -1\n    idle_timeout: -1s"),
			wantErrs: []string{"resources[0].ca_file applies only to a url resource", "resources[0].dir", "resources[0].max_processes -1", "resources[0].idle_timeout -1s"},
		},
		{
			name:     "per-agent cap above the resource's",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: /bin/sh\n    max_processes: 2\n    max_processes_per_agent: 3"),
			wantErrs: []string{"resources[0].max_processes_per_agent 3 must be 1 to max_processes (2)"},
		},
		{
			name:     "bad environment variable name",
			edit:     replace("url: http://127.0.0.1:8080/mcp", "command: /bin/sh\n    env: {\"A=B\": x}"),
			wantErrs: []string{`resources[0].env: "A=B" is not a valid variable name`},
		},
		{
			name:     "backoff max below initial",
			edit:     appendText("backoff:\n  initial: 2s\n  max: 1s\n"),
			wantErrs: []string{"backoff"},
		},
		{
			name:     "negative drain grace",
			edit:     appendText("drain_grace: -1s\n"),
			wantErrs: []string{"drain_grace"},
		},
		{
			name:     "keep-alive not below idle timeout",
			edit:     appendText("quic:\n  idle_timeout: 2s\n  keep_alive: 2s\n"),
			wantErrs: []string{"quic.keep_alive"},
		},
		{
			name: "several problems at once",
			edit: func(s string) string {
				s = replace("name: db", "name: \"\"")(s)
				return replace("connector.crt", "missing.crt")(s) + "connections: -1\n"
			},
			wantErrs: []string{"valid connector name", "cert_file", "connections -1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newConfigDir(t)
			got, err := LoadConfig(d.write(t, tt.edit(minimalConfig)))
			if err == nil {
				t.Fatalf("LoadConfig() = %+v, want an error", got)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("LoadConfig() = %v, want an error containing %q", err, want)
				}
			}
		})
	}
}

func TestLoadConfigCommandResource(t *testing.T) {
	d := newConfigDir(t)
	server := filepath.Join(d.dir, "bin", "server")
	if err := os.MkdirAll(filepath.Dir(server), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(server, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(d.write(t, `
name: db
edges: ["edge.example.com:8443"]
ca_file: $DIR/ca.crt
cert_file: $DIR/connector.crt
key_file: $DIR/connector.key
resources:
  - name: files
    command: ./bin/server
    args: ["--root", "/srv/shared"]
    env: {LOG_LEVEL: info}
    dir: bin
  - name: shell
    command: sh
    max_processes: 3
    idle_timeout: 30s
`))
	if err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	want := []Resource{
		{
			Name:         "files",
			Command:      server,
			Args:         []string{"--root", "/srv/shared"},
			Env:          map[string]string{"LOG_LEVEL": "info"},
			Dir:          filepath.Join(d.dir, "bin"),
			MaxProcesses: DefaultMaxProcesses,
			// One agent may take them all unless the config says less.
			MaxProcessesPerAgent: DefaultMaxProcesses,
			IdleTimeout:          DefaultIdleTimeout,
		},
		// The name found in PATH is stored as the path it was found at.
		{Name: "shell", Command: sh, MaxProcesses: 3, MaxProcessesPerAgent: 3, IdleTimeout: 30 * time.Second},
	}
	if diff := cmp.Diff(want, got.Resources); diff != "" {
		t.Errorf("LoadConfig().Resources mismatch (-want +got):\n%s", diff)
	}
}

func TestWithDefaultsKeepsCallersResources(t *testing.T) {
	res := []Resource{{Name: "shell", Command: "sh"}}
	got := Config{Resources: res}.WithDefaults()
	if res[0].MaxProcesses != 0 || got.Resources[0].MaxProcesses != DefaultMaxProcesses {
		t.Errorf("WithDefaults() set max_processes %d on the caller's slice and %d on its own, want 0 and %d",
			res[0].MaxProcesses, got.Resources[0].MaxProcesses, DefaultMaxProcesses)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "absent.yaml")
	if _, err := LoadConfig(file); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("LoadConfig(%q) = %v, want an error naming the file", file, err)
	}
}

// appendText returns an edit that adds extra at the end of a config.
func appendText(extra string) func(string) string {
	return func(s string) string { return s + extra }
}

// replace returns an edit that replaces the first old in a config with
// with; a test whose config lacks old is broken, so it panics.
func replace(old, with string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test config holds no " + old)
		}
		return strings.Replace(s, old, with, 1)
	}
}
