package edge

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// newDataDir returns a data folder that passes the config's CA check: it
// only looks for the root certificate file.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := certs.RootFile(caDir(dir))
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("placeholder"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeEdgeConfig stores yaml as edge.yaml, after replacing $DATA with
// dataDir, and returns its path.
func writeEdgeConfig(t *testing.T, dataDir, yaml string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "edge.yaml")
	yaml = strings.ReplaceAll(yaml, "$DATA", dataDir)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestLoadConfigDefaults(t *testing.T) {
	data := newDataDir(t)
	got, err := LoadConfig(writeEdgeConfig(t, data, "data_dir: $DATA\n"))
	if err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	want := Config{
		Name:                  "edge",
		DataDir:               data,
		Listen:                "127.0.0.1:8443",
		TunnelListen:          "127.0.0.1:8443",
		OpsListen:             "127.0.0.1:9443",
		PublicURL:             "https://127.0.0.1:8443",
		Hosts:                 got.Hosts, // checked below
		CertLifetime:          24 * time.Hour,
		AgentCertLifetime:     time.Hour,
		ConnectorCertLifetime: 24 * time.Hour,
		MaxJoinTokenTTL:       24 * time.Hour,
		AdminSocket:           filepath.Join(data, "admin.sock"),
		MaxBodyBytes:          1 << 20,
		ReadHeaderTimeout:     10 * time.Second,
		IdleTimeout:           120 * time.Second,
		SessionIdleTimeout:    time.Hour,
		AccessTokenLifetime:   5 * time.Minute,
		TokenSigningAlg:       "EdDSA",
		PolicyDir:             filepath.Join(data, "policy"),
		PolicyReloadInterval:  time.Second,
		AuditFile:             filepath.Join(data, "audit.jsonl"),
		AuditRedact:           audit.DefaultRedact,
		ShutdownGrace:         30 * time.Second,
		QUIC:                  tunnel.QUICSettings{}.WithDefaults(tunnel.DefaultEdgeStreams),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}
	if got.QUIC.MaxIncomingStreams != 16 {
		t.Errorf("LoadConfig().QUIC.MaxIncomingStreams = %d, want 16 on an edge",
			got.QUIC.MaxIncomingStreams)
	}
	if want := []string{"127.0.0.1", "::1", "localhost"}; !slices.Equal(hostSet(got.Hosts), want) {
		t.Errorf("LoadConfig().Hosts = %q, want the names %q", got.Hosts, want)
	}
}

// hostSet returns hosts sorted, without repeats.
func hostSet(hosts []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(hosts)))
}

func TestWithDefaultsDerivedValues(t *testing.T) {
	tests := []struct {
		name      string
		in        Config
		wantURL   string
		wantHosts []string
	}{
		{
			name:      "wildcard listen is not a host",
			in:        Config{Listen: "0.0.0.0:443", PublicURL: "https://airlock.example.com"},
			wantURL:   "https://airlock.example.com",
			wantHosts: []string{"localhost", "127.0.0.1", "::1", "airlock.example.com"},
		},
		{
			name: "IPv6 wildcard, tunnel elsewhere",
			in: Config{
				Listen:       "[::]:443",
				TunnelListen: "10.0.0.5:4433",
				PublicURL:    "https://a.example:443",
			},
			wantURL:   "https://a.example:443",
			wantHosts: []string{"localhost", "127.0.0.1", "::1", "10.0.0.5", "a.example"},
		},
		{
			name:      "public URL follows listen",
			in:        Config{Listen: "edge.internal:8443"},
			wantURL:   "https://edge.internal:8443",
			wantHosts: []string{"localhost", "127.0.0.1", "::1", "edge.internal"},
		},
		{
			name:      "hosts given are kept",
			in:        Config{Listen: "edge.internal:8443", Hosts: []string{"only.example"}},
			wantURL:   "https://edge.internal:8443",
			wantHosts: []string{"only.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if got.PublicURL != tt.wantURL {
				t.Errorf("WithDefaults().PublicURL = %q, want %q", got.PublicURL, tt.wantURL)
			}
			// Repeats are harmless in a certificate; only the set counts.
			if diff := cmp.Diff(hostSet(tt.wantHosts), hostSet(got.Hosts)); diff != "" {
				t.Errorf("WithDefaults().Hosts %q mismatch (-want +got):\n%s", got.Hosts, diff)
			}
			if tt.in.TunnelListen == "" && got.TunnelListen != tt.in.Listen {
				t.Errorf("WithDefaults().TunnelListen = %q, want Listen %q",
					got.TunnelListen, tt.in.Listen)
			}
		})
	}
}

func TestLoadConfigKeepsSetValues(t *testing.T) {
	data := newDataDir(t)
	got, err := LoadConfig(writeEdgeConfig(t, data, `
name: eu-1
data_dir: $DATA
listen: 0.0.0.0:443
tunnel_listen: 0.0.0.0:4433
ops_listen: "off"
public_url: https://airlock.example.com
cert_lifetime: 1h
allowed_origins: ["https://app.example.com"]
max_body_bytes: 4096
session_idle_timeout: 10m
resources:
  - name: files
    connectors: [db, db-2]
`))
	if err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	want := Config{
		Name:                  "eu-1",
		DataDir:               data,
		Listen:                "0.0.0.0:443",
		TunnelListen:          "0.0.0.0:4433",
		OpsListen:             "off",
		PublicURL:             "https://airlock.example.com",
		Hosts:                 []string{"localhost", "127.0.0.1", "::1", "airlock.example.com"},
		CertLifetime:          time.Hour,
		AgentCertLifetime:     DefaultAgentCertLifetime,
		ConnectorCertLifetime: DefaultConnectorLifetime,
		MaxJoinTokenTTL:       DefaultMaxJoinTokenTTL,
		AdminSocket:           AdminSocket(data),
		AllowedOrigins:        []string{"https://app.example.com"},
		MaxBodyBytes:          4096,
		ReadHeaderTimeout:     DefaultReadHeaderTimeout,
		IdleTimeout:           DefaultIdleTimeout,
		SessionIdleTimeout:    10 * time.Minute,
		AccessTokenLifetime:   5 * time.Minute,
		TokenSigningAlg:       "EdDSA",
		PolicyDir:             filepath.Join(data, "policy"),
		PolicyReloadInterval:  time.Second,
		AuditFile:             filepath.Join(data, "audit.jsonl"),
		AuditRedact:           audit.DefaultRedact,
		ShutdownGrace:         DefaultShutdownGrace,
		QUIC:                  tunnel.QUICSettings{}.WithDefaults(tunnel.DefaultEdgeStreams),
		Resources:             []Resource{{Name: "files", Connectors: []string{"db", "db-2"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigRefuses(t *testing.T) {
	// Each yaml follows "data_dir: <a folder with a CA>"; every string in
	// wantErrs must appear in the error.
	tests := []struct {
		name, yaml string
		wantErrs   []string
	}{
		{"unknown key", "listn: 127.0.0.1:1\n", []string{"listn", "edge.yaml"}},
		{"unknown nested key", "quic:\n  idle: 3s\n", []string{"idle", "edge.yaml"}},
		{"wrong type", "max_body_bytes: lots\n", []string{"max_body_bytes", "edge.yaml"}},
		{"invalid name", "name: Edge\n", []string{`name "Edge"`}},
		{"listen without port", "listen: 127.0.0.1\n", []string{`listen "127.0.0.1"`}},
		{"tunnel_listen without port", "tunnel_listen: x\n", []string{`tunnel_listen "x"`}},
		{"ops_listen without port", "ops_listen: nowhere\n", []string{`ops_listen "nowhere"`}},
		{"plain HTTP public URL", "public_url: http://a.example\n", []string{"public_url"}},
		{"public URL with path", "public_url: https://a.example/mcp\n", []string{"public_url"}},
		{"public URL without host", "public_url: https://\n", []string{"public_url"}},
		{"cert_lifetime too short", "cert_lifetime: 59s\n", []string{"cert_lifetime 59s"}},
		{"cert_lifetime too long", "cert_lifetime: 721h\n", []string{"cert_lifetime 721h"}},
		{"negative cert_lifetime", "cert_lifetime: -1h\n", []string{"cert_lifetime -1h"}},
		{"small max_body_bytes", "max_body_bytes: 1023\n", []string{"max_body_bytes 1023"}},
		{
			"origin with path",
			"allowed_origins: [\"https://app.example.com/\"]\n",
			[]string{"allowed_origins", "https://app.example.com/"},
		},
		{"origin without scheme", "allowed_origins: [app.example]\n", []string{"allowed_origins"}},

		{
			"invalid resource name",
			"resources:\n  - name: Files\n    connectors: [db]\n",
			[]string{`resources[0].name "Files"`},
		},
		{
			"duplicate resource",
			"resources:\n  - {name: a, connectors: [db]}\n  - {name: a, connectors: [db]}\n",
			[]string{`resources[1].name "a" appears twice`},
		},
		{
			"resource without connectors",
			"resources:\n  - name: a\n",
			[]string{"resources[0].connectors"},
		},
		{
			"invalid connector name",
			"resources:\n  - name: a\n    connectors: [db, DB]\n",
			[]string{`resources[0].connectors[1] "DB"`},
		},
		{"bad quic settings", "quic:\n  keep_alive: 10s\n", []string{"quic.keep_alive"}},
		{
			"several problems at once",
			"name: _e\nlisten: nowhere\nmax_body_bytes: 1\n",
			[]string{`name "_e"`, `listen "nowhere"`, "max_body_bytes 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLoadConfigErr(t, newDataDir(t), "data_dir: $DATA\n"+tt.yaml, tt.wantErrs)
		})
	}
}

func TestLoadConfigDataDir(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		checkLoadConfigErr(t, "", "name: e\n", []string{"data_dir is required"})
	})
	t.Run("without CA", func(t *testing.T) {
		empty := t.TempDir()
		want := []string{"data_dir " + empty + " holds no CA", "airlock edge init"}
		checkLoadConfigErr(t, empty, "data_dir: $DATA\n", want)
	})
}

// checkLoadConfigErr loads yaml as a config file and checks that it fails
// with an error holding every string of wantErrs.
func checkLoadConfigErr(t *testing.T, dataDir, yaml string, wantErrs []string) {
	t.Helper()
	got, err := LoadConfig(writeEdgeConfig(t, dataDir, yaml))
	if err == nil {
		t.Fatalf("LoadConfig() = %+v, want an error", got)
	}
	for _, want := range wantErrs {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig() = %v, want an error containing %q", err, want)
		}
	}
}
