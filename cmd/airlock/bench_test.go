package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/examples/demoserver"
)

// TestEchoCallNeedsStatelessServer checks the bench's premise: the
// stateless demo server answers tools/call without initialize, and the
// bench's check catches the 200 with a JSON-RPC error that a server with
// sessions gives instead.
func TestEchoCallNeedsStatelessServer(t *testing.T) {
	tests := []struct {
		name      string
		stateless bool
		wantErr   string
	}{
		{"stateless", true, ""},
		{"sessions", false, "answer lacks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(demoserver.Handler(demoserver.Options{}, tt.stateless))
			defer srv.Close()
			target := &benchTarget{name: tt.name, url: srv.URL + "/mcp", client: http.DefaultClient}
			err := newEchoCall(7).do(t.Context(), target, 3)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("echo call = %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("echo call = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var ms []time.Duration
	for i := 1; i <= 100; i++ {
		ms = append(ms, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms[:1], 0.99, time.Millisecond},
		{"median of 100", ms, 0.5, 50 * time.Millisecond},
		{"p99 of 100", ms, 0.99, 99 * time.Millisecond},
		{"max", ms, 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%g) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

// TestBenchCommand runs a very short bench and checks its JSON report
// and that it leaves no temporary folder behind.
func TestBenchCommand(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	out, err := airlock(t.Context(), "bench", "--json", "--duration", "200ms", "--warmup", "100ms",
		"--rounds", "2", "--concurrency", "4", "--latency-requests", "20")
	if err != nil {
		t.Fatalf("airlock bench: %v\n%s", err, out)
	}
	// Progress lines come first on the same writer in this test.
	start := strings.Index(out, "{\n")
	if start < 0 {
		t.Fatalf("no JSON report in:\n%s", out)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out[start:]), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, out)
	}
	for name, r := range map[string]targetResult{"direct": rep.Direct, "airlock": rep.Airlock} {
		if r.Requests == 0 || r.Failures != 0 || r.RPS <= 0 || r.P50 <= 0 || len(r.RoundRPS) != 2 {
			t.Errorf("%s result = %+v, want requests without failures over 2 rounds", name, r)
		}
	}
	if len(rep.Aims) != 2 {
		t.Errorf("report has %d aims, want 2", len(rep.Aims))
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("bench left %d entries in its temporary folder, first %s", len(left), left[0].Name())
	}
}
