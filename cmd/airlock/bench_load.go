package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds that keep every bench loop finite whatever the flags say.
const (
	// benchRequestTimeout bounds one request, so a stuck answer costs a
	// failure, not the run.
	benchRequestTimeout = 10 * time.Second
	// benchMaxPerClient bounds the requests of one client in one phase.
	benchMaxPerClient = 10_000_000
	// benchMaxBody bounds how much of an answer is read.
	benchMaxBody = 64 << 10
)

// benchTarget is one way to reach the demo server's echo tool: directly
// or through the edge.
type benchTarget struct {
	name   string
	url    string
	client *http.Client
}

// newBenchTransport returns an HTTP/1.1 transport that keeps a keep-alive
// connection for each of clients, so that no phase pays for new TCP or TLS
// handshakes after the warm-up.
func newBenchTransport(clients int) *http.Transport {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	return &http.Transport{
		Protocols:           protos,
		MaxIdleConns:        2 * clients,
		MaxIdleConnsPerHost: 2 * clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// phase is what one phase measured. CPU is the whole process's: client,
// edge, connector and demo server all run in it.
type phase struct {
	requests  int64
	failures  int64
	firstErr  error
	elapsed   time.Duration
	cpu       time.Duration
	latencies []time.Duration
}

// add merges o into p.
func (p *phase) add(o phase) {
	p.requests += o.requests
	p.failures += o.failures
	if p.firstErr == nil {
		p.firstErr = o.firstErr
	}
	p.elapsed += o.elapsed
	p.cpu += o.cpu
	p.latencies = append(p.latencies, o.latencies...)
}

// run has clients each send echo calls one after another until maxEach
// calls or d have passed, whichever comes first. Calls in flight at the
// deadline finish and count.
func (t *benchTarget) run(ctx context.Context, clients, maxEach int, d time.Duration) phase {
	results := make([]phase, clients)
	deadline := time.Now().Add(d)
	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { results[i] = t.oneClient(ctx, i, maxEach, deadline) })
	}
	wg.Wait()
	total := phase{elapsed: time.Since(start), cpu: processCPU() - cpu0}
	for _, r := range results {
		total.add(r)
	}
	return total
}

// oneClient is one client of run.
func (t *benchTarget) oneClient(ctx context.Context, id, maxEach int, deadline time.Time) phase {
	var p phase
	c := newEchoCall(id)
	for i := 0; i < maxEach && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		start := time.Now()
		err := c.do(ctx, t, i)
		p.latencies = append(p.latencies, time.Since(start))
		p.requests++
		if err != nil {
			p.failures++
			if p.firstErr == nil {
				p.firstErr = fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	return p
}

// echoCall builds and checks the echo calls of one client. Every call
// echoes a text of its own, so an answer meant for another call (or an
// error result with status 200) counts as a failure.
type echoCall struct {
	prefix string
	want   []byte
	resp   bytes.Buffer
}

func newEchoCall(client int) *echoCall {
	return &echoCall{prefix: "bench-" + strconv.Itoa(client) + "-"}
}

// do posts call number n. It answers nil, or what went wrong.
func (c *echoCall) do(ctx context.Context, t *benchTarget, n int) error {
	text := c.prefix + strconv.Itoa(n)
	c.want = append(append(append(c.want[:0], `"text":"`...), text...), '"')
	// A new body each time: the transport may still read a request body
	// after the response has come.
	body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(n) +
		`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + text + `"}}}`

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
	if err != nil {
		return err
	}
	// A stateless server answers tools/call without initialize (the
	// 2025-06-18 transport without a session, or 2026-07-28).
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	c.resp.Reset()
	if _, err := c.resp.ReadFrom(io.LimitReader(resp.Body, benchMaxBody)); err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, c.resp.Bytes())
	}
	if !bytes.Contains(c.resp.Bytes(), c.want) {
		return fmt.Errorf("answer lacks %s: %.200s", c.want, c.resp.Bytes())
	}
	return nil
}

// check makes one call, to see that the target answers at all.
func (t *benchTarget) check(ctx context.Context) error {
	if err := newEchoCall(0).do(ctx, t, 0); err != nil {
		return fmt.Errorf("checking %s: %w", t.name, err)
	}
	return nil
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted by the
// nearest-rank method; zero when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// errFailures reports requests that failed.
var errFailures = errors.New("bench requests failed")

// sortedLatencies sorts p's latencies in place and returns them.
func (p *phase) sortedLatencies() []time.Duration {
	slices.Sort(p.latencies)
	return p.latencies
}
