package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/token"
)

// benchOptions are the flags of airlock bench.
type benchOptions struct {
	duration        time.Duration
	warmup          time.Duration
	rounds          int
	concurrency     int
	latencyRequests int
	json            bool
	cpuProfile      string
}

func (o benchOptions) validate() error {
	var errs []error
	if o.duration <= 0 || o.duration > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--duration %s: want more than 0, at most 10m", o.duration))
	}
	if o.warmup < 0 || o.warmup > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--warmup %s: want 0 to 10m", o.warmup))
	}
	if o.rounds < 1 || o.rounds > 100 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1 to 100", o.rounds))
	}
	if o.concurrency < 1 || o.concurrency > 10_000 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want 1 to 10000", o.concurrency))
	}
	if o.latencyRequests < 1 || o.latencyRequests > benchMaxPerClient {
		errs = append(errs, fmt.Errorf("--latency-requests %d: want 1 to %d",
			o.latencyRequests, benchMaxPerClient))
	}
	return errors.Join(errs...)
}

func newBenchCmd(g *globalFlags) *cobra.Command {
	opts := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what Airlock adds to an MCP tool call, against calling the server directly",
		Long: "Start a whole local deployment in this process (as airlock dev does, in a temporary\n" +
			"folder, with the demo MCP server stateless) and call its echo tool directly and\n" +
			"through Airlock (agent certificate, mTLS to the edge, QUIC tunnel, connector), in\n" +
			"interleaved rounds after a warm-up. Each round measures, per target, latency with\n" +
			"one client (--latency-requests calls) and then throughput with --concurrency\n" +
			"clients for --duration. Prints p50 and p99 latency, requests per second, process\n" +
			"CPU per request, what Airlock adds, and whether the aims (at most 150 µs added to\n" +
			"the one-client p50, at least 40% of direct throughput) were met. Every answer is\n" +
			"checked; the command fails if any call failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			logger, err := benchLogger(cmd, g)
			if err != nil {
				return err
			}
			rep, err := runBench(cmd.Context(), opts, logger, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := rep.write(cmd.OutOrStdout(), opts.json); err != nil {
				return err
			}
			return rep.failed()
		},
	}
	f := cmd.Flags()
	f.DurationVar(&opts.duration, "duration", 3*time.Second, "length of each throughput phase, and the most a latency phase may take")
	f.DurationVar(&opts.warmup, "warmup", time.Second, "warm-up per target before the first round")
	f.IntVar(&opts.rounds, "rounds", 3, "rounds; each runs direct, then airlock")
	f.IntVar(&opts.concurrency, "concurrency", 50, "concurrent clients in the throughput phase")
	f.IntVar(&opts.latencyRequests, "latency-requests", 2000, "sequential calls per target and round in the latency phase")
	f.BoolVar(&opts.json, "json", false, "print the results as JSON")
	f.StringVar(&opts.cpuProfile, "cpuprofile", "", "after the rounds, run one more airlock throughput phase under the CPU profiler and write the profile to this file")
	return cmd
}

// benchLogger logs warnings and errors only, as text, unless the flags
// say otherwise: per-request logging would measure the logger.
func benchLogger(cmd *cobra.Command, g *globalFlags) (*slog.Logger, error) {
	if !cmd.Flags().Changed("log-level") {
		g.logLevel = "warn"
	}
	if !cmd.Flags().Changed("log-format") {
		g.logFormat = "text"
	}
	return g.logger()
}

// runBench runs the whole benchmark in a temporary folder, which it
// removes afterwards. progress receives a line per phase.
func runBench(
	ctx context.Context,
	opts benchOptions,
	logger *slog.Logger,
	progress io.Writer,
) (*benchReport, error) {
	dir, err := os.MkdirTemp("", "airlock-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := startStack(ctx, stackOptions{
		dir:       dir,
		addr:      "127.0.0.1:0",
		opsAddr:   "off",
		stateless: true,
		logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the local deployment: %w", err)
	}
	defer s.stop()

	direct, err := directTarget(s, opts.concurrency)
	if err != nil {
		return nil, err
	}
	defer direct.client.CloseIdleConnections()
	airlock, err := airlockTarget(s.info, opts.concurrency)
	if err != nil {
		return nil, err
	}
	defer airlock.client.CloseIdleConnections()

	b := &bencher{opts: opts, targets: [2]*benchTarget{direct, airlock}, progress: progress}
	return b.run(ctx)
}

// directTarget serves the stack's demo server on a second loopback
// listener as well: the same handler and MCP server the connector relays
// to, at an address the bench knows.
func directTarget(s *stack, clients int) (*benchTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for direct calls: %w", err)
	}
	go s.demo.Serve(ln)
	client := &http.Client{Transport: newBenchTransport(clients), Timeout: benchRequestTimeout}
	return &benchTarget{name: "direct", url: "http://" + ln.Addr().String() + "/mcp", client: client}, nil
}

// airlockTarget calls the demo resource through the edge with the stack's
// agent certificate.
func airlockTarget(info devInfo, clients int) (*benchTarget, error) {
	cred, err := certs.LoadCredential(info.AgentCert, info.AgentKey)
	if err != nil {
		return nil, err
	}
	roots, err := certs.ReadPool(info.CACert)
	if err != nil {
		return nil, err
	}
	tr := newBenchTransport(clients)
	tr.TLSClientConfig = &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cred.TLSCertificate()},
		MinVersion:   tls.VersionTLS13,
	}
	// The agent fetches its access token once and reuses it, as a real
	// agent does for its token's lifetime.
	client := &http.Client{Transport: token.NewTransport(tr, nil), Timeout: benchRequestTimeout}
	return &benchTarget{name: "airlock", url: info.Resources[devResource], client: client}, nil
}

// bencher runs the phases; targets are direct and airlock, in that order.
type bencher struct {
	opts     benchOptions
	targets  [2]*benchTarget
	progress io.Writer
}

func (b *bencher) run(ctx context.Context) (*benchReport, error) {
	if err := b.warmUp(ctx); err != nil {
		return nil, err
	}
	var seq, load [2]phase
	var roundRPS [2][]float64
	for r := range b.opts.rounds {
		for i, t := range b.targets {
			s := b.measure(ctx, t, 1, b.opts.latencyRequests)
			l := b.measure(ctx, t, b.opts.concurrency, benchMaxPerClient)
			rps := float64(l.requests) / l.elapsed.Seconds()
			p50 := percentile(s.sortedLatencies(), 0.5)
			fmt.Fprintf(b.progress, "round %d/%d %-7s p50 %6.0f µs  %8.0f req/s  failures %d\n",
				r+1, b.opts.rounds, t.name, micros(p50), rps, s.failures+l.failures)
			seq[i].add(s)
			load[i].add(l)
			roundRPS[i] = append(roundRPS[i], rps)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if err := b.profile(ctx); err != nil {
		return nil, err
	}
	return newBenchReport(b.opts, seq, load, roundRPS), nil
}

// warmUp checks that both targets answer, then opens every keep-alive
// connection (and its TLS session) and lets the heap and the QUIC windows
// grow to their steady size.
func (b *bencher) warmUp(ctx context.Context) error {
	for _, t := range b.targets {
		if err := t.check(ctx); err != nil {
			return err
		}
		w := t.run(ctx, b.opts.concurrency, benchMaxPerClient, b.opts.warmup)
		if w.failures > 0 {
			return fmt.Errorf("warming up: %d of %d requests failed: %w",
				w.failures, w.requests, w.firstErr)
		}
	}
	return nil
}

// measure runs one phase after a garbage collection, so that no phase
// pays for the garbage of the one before.
func (b *bencher) measure(ctx context.Context, t *benchTarget, clients, maxEach int) phase {
	runtime.GC()
	return t.run(ctx, clients, maxEach, b.opts.duration)
}

// profile runs one more airlock throughput phase under the CPU profiler,
// outside the measured rounds so the profiler's cost skews no figure.
func (b *bencher) profile(ctx context.Context) (err error) {
	if b.opts.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(b.opts.cpuProfile)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("starting CPU profile: %w", err)
	}
	b.measure(ctx, b.targets[1], b.opts.concurrency, benchMaxPerClient)
	pprof.StopCPUProfile()
	fmt.Fprintf(b.progress, "CPU profile of one airlock phase written to %s\n", b.opts.cpuProfile)
	return nil
}

// write prints the report as a table, or as JSON.
func (r *benchReport) write(w io.Writer, asJSON bool) error {
	if !asJSON {
		return r.print(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
