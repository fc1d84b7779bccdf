// Command peerbench measures Airlock against its peers on one machine, in
// one run, on the same upstream (the demo MCP server, stateless, its echo
// tool): directly; through Airlock (agent mTLS and access token, policy
// and audit, QUIC tunnel, connector; edge and connector each their own
// process, set up as in production); through a plain Go reverse proxy
// (the floor for any proxy); and through frp v0.65.0 over QUIC, as a
// plain port forward and in its HTTP mode. frp is built from a throwaway
// module in the cache folder; where it cannot be built the frp rows are
// skipped with a note. Everything listens on loopback. `make bench` runs
// it after `airlock bench`.
//
// Beyond calls it measures open MCP sessions (memory per session, and
// 10,000 concurrent SSE streams on one edge), the time to the first good
// call after a crashed connector or edge starts again, and the memory of
// idle tunnels. Every row prints whether it passed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/airlockhq/airlock/examples/demoserver"
)

func main() {
	cache := flag.String("cache", defaultCache(), "folder for the built programs")
	duration := flag.Duration("duration", 5*time.Second, "how long each throughput measurement runs")
	calls := flag.Bool("calls", true, "measure calls (latency, throughput, reads); "+
		"-calls=false measures only sessions, restarts and idle tunnels")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cache, *duration, *calls); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func defaultCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "airlock-peerbench")
	}
	return filepath.Join(os.TempDir(), "airlock-peerbench")
}

// target is one way to reach the upstream.
type target struct {
	name   string
	url    string
	host   string // Host header, for frp's HTTP mode
	client *http.Client
	pids   func() []int // processes that carry its traffic, besides this one
}

func (t *target) processes() []int {
	if t.pids == nil {
		return nil
	}
	return t.pids()
}

func run(ctx context.Context, cache string, d time.Duration, calls bool) error {
	work, err := os.MkdirTemp("", "airlock-peerbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	direct, err := serve(demoserver.Handler(demoserver.Options{SandboxDir: work}, true))
	if err != nil {
		return err
	}
	directURL := "http://" + direct + "/mcp"
	plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	targets := []*target{{name: "direct", url: directURL, client: plain}}

	u, _ := url.Parse("http://" + direct)
	proxied, err := serve(httputil.NewSingleHostReverseProxy(u))
	if err != nil {
		return err
	}
	targets = append(targets, &target{name: "Go reverse proxy", url: "http://" + proxied + "/mcp", client: plain})

	sessionsSrv := newSessionServer()
	sessions, err := serve(sessionsSrv.handler)
	if err != nil {
		return err
	}
	sessionsURL := "http://" + sessions + "/mcp"
	air, err := startAirlock(ctx, cache, work, directURL, sessionsURL)
	if err != nil {
		return err
	}
	defer air.close()
	airT := air.target()
	targets = append(targets, airT)

	frp, note := startFRP(ctx, cache, work, direct, sessions)
	if frp != nil {
		defer frp.close()
		targets = append(targets, frp.targets(plain)...)
	}

	fmt.Printf("peerbench: %s, %d CPUs, %s per throughput run\n", runtimeDesc(), numCPU(), d)
	if note != "" {
		fmt.Println("peerbench:", note)
	}
	for _, t := range targets {
		if err := call(ctx, t, 0, 0); err != nil {
			return fmt.Errorf("%s does not answer: %w", t.name, err)
		}
	}
	var rows []row
	if calls {
		rows = measureCalls(ctx, targets, d)
		printTable(rows)
	}
	more := measureMore(ctx, air, frp, sessionsSrv, airT, plain)
	more.print()
	failed := failedRows(rows) + more.failed()
	fmt.Printf("peerbench: %d passed, %d failed\n", len(rows)+more.rows()-failed, failed)
	for _, r := range rows {
		if r.failed > 0 {
			return fmt.Errorf("%s: %d calls failed", r.name, r.failed)
		}
	}
	if failed > 0 {
		return errors.New("some rows failed; see above")
	}
	return nil
}

// measureCalls measures every target twice, interleaved so that drift on
// a shared machine hits all alike, and keeps each one's better run.
func measureCalls(ctx context.Context, targets []*target, d time.Duration) []row {
	rows := make([]row, len(targets))
	for round := range 2 {
		for i, t := range targets {
			r := measure(ctx, t, d)
			if round == 0 || r.rps[2] > rows[i].rps[2] {
				rows[i] = r
			}
		}
	}
	return rows
}

// call makes echo call n of client c and checks the answer.
func call(ctx context.Context, t *target, c, n int) error {
	text := "pb-" + strconv.Itoa(c) + "-" + strconv.Itoa(n)
	body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(n) +
		`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + text + `"}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if t.host != "" {
		req.Host = t.host
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"text":"`+text+`"`)) {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, data)
	}
	return nil
}

// read calls blob for size bytes and returns how long the whole answer
// took to arrive.
func read(ctx context.Context, t *target, size int) (time.Duration, error) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"blob","arguments":{"size":` +
		strconv.Itoa(size) + `}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if t.host != "" {
		req.Host = t.host
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || n < int64(size) {
		return 0, fmt.Errorf("blob %d: status %d, %d bytes, %v", size, resp.StatusCode, n, err)
	}
	return took, nil
}

// row is what was measured of one target.
type row struct {
	name     string
	p50, p99 time.Duration
	rps      [3]float64 // at 1, 16 and 64 clients
	cpu      time.Duration
	reads    [2]time.Duration // median time to read 1 MiB and 10 MiB
	failed   int
}

var readSizes = [2]int{1 << 20, 10 << 20}

var concurrency = [3]int{1, 16, 64}

func measure(ctx context.Context, t *target, d time.Duration) row {
	r := row{name: t.name}
	var lat []time.Duration
	for n := range 300 {
		start := time.Now()
		if call(ctx, t, 0, n) != nil {
			r.failed++
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	for i, size := range readSizes {
		var took []time.Duration
		for range 5 {
			d, err := read(ctx, t, size)
			if err != nil {
				r.failed++
				fmt.Fprintf(os.Stderr, "peerbench: %s: %v\n", t.name, err)
				continue
			}
			took = append(took, d)
		}
		if len(took) > 0 {
			slices.Sort(took)
			r.reads[i] = took[len(took)/2]
		}
	}
	for i, clients := range concurrency {
		cpuBefore := cpuOf(t.processes())
		var done, failed int64
		var mu sync.Mutex
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for c := range clients {
			wg.Go(func() {
				var ok, bad int64
				for n := 0; time.Now().Before(deadline); n++ {
					if call(ctx, t, c+1, n) != nil {
						bad++
					} else {
						ok++
					}
				}
				mu.Lock()
				done += ok
				failed += bad
				mu.Unlock()
			})
		}
		wg.Wait()
		r.rps[i] = float64(done) / d.Seconds()
		r.failed += int(failed)
		if clients == 64 && done > 0 {
			r.cpu = (cpuOf(t.processes()) - cpuBefore) / time.Duration(done)
		}
	}
	return r
}

func printTable(rows []row) {
	base := rows[0]
	fmt.Printf("\n%-24s %9s %9s %8s %8s %8s %9s %11s %8s %8s\n", "target", "p50", "p99", "rps@1",
		"rps@16", "rps@64", "vs direct", "CPU/call*", "1 MiB", "10 MiB")
	for _, r := range rows {
		fmt.Printf("%-24s %7.0fµs %7.0fµs %8.0f %8.0f %8.0f %8.0f%% %9.0fµs %6.1fms %6.1fms\n", r.name,
			micros(r.p50), micros(r.p99), r.rps[0], r.rps[1], r.rps[2], 100*r.rps[2]/base.rps[2],
			micros(r.cpu), micros(r.reads[0])/1e3, micros(r.reads[1])/1e3)
	}
	fmt.Println("\n* CPU per call at 64 clients of the processes that carry the target's traffic " +
		"besides the load generator and the upstream (the edge and connector processes; frps and frpc); " +
		"0 for targets in this process.")
}

func failedRows(rows []row) int {
	n := 0
	for _, r := range rows {
		if r.failed > 0 {
			n++
		}
	}
	return n
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// cpuOf returns the CPU time used so far by the processes (Linux; 0
// elsewhere).
func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command (which may hold spaces) start after ")".
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

func serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return ln.Addr().String(), nil
}

func runtimeDesc() string {
	out, err := exec.Command("uname", "-srm").Output()
	if err != nil {
		return "unknown machine"
	}
	return strings.TrimSpace(string(out))
}

func numCPU() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "processor\t:")
}
