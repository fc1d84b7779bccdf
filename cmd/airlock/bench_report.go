package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// The aims of the issue that asked for airlock bench.
const (
	aimAddedP50      = 150 * time.Microsecond
	aimThroughputMin = 0.40
)

// benchReport is what airlock bench prints; with --json, as it is.
// Latencies and CPU times are in microseconds.
type benchReport struct {
	Machine  benchMachine  `json:"machine"`
	Settings benchSettings `json:"settings"`
	Note     string        `json:"note"`
	Direct   targetResult  `json:"direct"`
	Airlock  targetResult  `json:"airlock"`
	Compare  comparison    `json:"comparison"`
	Aims     []benchAim    `json:"aims"`

	firstErr error
}

type benchMachine struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

type benchSettings struct {
	PhaseSeconds    float64 `json:"phase_seconds"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	Rounds          int     `json:"rounds"`
	Concurrency     int     `json:"concurrency"`
	LatencyRequests int     `json:"latency_requests"`
}

// targetResult sums one target's phases over all rounds. P50 and P99 come
// from the one-client latency phases, Loaded* from the throughput phases.
type targetResult struct {
	P50           float64   `json:"p50_us"`
	P99           float64   `json:"p99_us"`
	LoadedP50     float64   `json:"loaded_p50_us"`
	LoadedP99     float64   `json:"loaded_p99_us"`
	RPS           float64   `json:"requests_per_second"`
	RoundRPS      []float64 `json:"round_requests_per_second"`
	CPUPerRequest float64   `json:"cpu_per_request_us"`
	Requests      int64     `json:"requests"`
	Failures      int64     `json:"failures"`
}

// comparison is airlock against direct.
type comparison struct {
	AddedP50        float64 `json:"added_p50_us"`
	AddedP99        float64 `json:"added_p99_us"`
	AddedLoadedP50  float64 `json:"added_loaded_p50_us"`
	AddedLoadedP99  float64 `json:"added_loaded_p99_us"`
	ThroughputRatio float64 `json:"throughput_ratio"`
	CPURatio        float64 `json:"cpu_ratio"`
	AddedCPU        float64 `json:"added_cpu_per_request_us"`
}

type benchAim struct {
	Aim   string  `json:"aim"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`

	shown string
}

const benchNote = "client, edge, connector and demo server run in one process: " +
	"CPU per request is the whole process's CPU time (getrusage) " +
	"over the throughput phases divided by their requests"

func newBenchReport(o benchOptions, seq, load [2]phase, roundRPS [2][]float64) *benchReport {
	r := &benchReport{
		Machine: benchMachine{
			GoVersion:  runtime.Version(),
			OS:         runtime.GOOS,
			Arch:       runtime.GOARCH,
			CPUs:       runtime.NumCPU(),
			GOMAXPROCS: runtime.GOMAXPROCS(0),
		},
		Settings: benchSettings{
			PhaseSeconds:    o.duration.Seconds(),
			WarmupSeconds:   o.warmup.Seconds(),
			Rounds:          o.rounds,
			Concurrency:     o.concurrency,
			LatencyRequests: o.latencyRequests,
		},
		Note:    benchNote,
		Direct:  newTargetResult(&seq[0], &load[0], roundRPS[0]),
		Airlock: newTargetResult(&seq[1], &load[1], roundRPS[1]),
	}
	for _, p := range []phase{seq[0], load[0], seq[1], load[1]} {
		if r.firstErr == nil {
			r.firstErr = p.firstErr
		}
	}
	d, a := r.Direct, r.Airlock
	c := comparison{
		AddedP50:        a.P50 - d.P50,
		AddedP99:        a.P99 - d.P99,
		AddedLoadedP50:  a.LoadedP50 - d.LoadedP50,
		AddedLoadedP99:  a.LoadedP99 - d.LoadedP99,
		ThroughputRatio: ratio(a.RPS, d.RPS),
		CPURatio:        ratio(a.CPUPerRequest, d.CPUPerRequest),
		AddedCPU:        a.CPUPerRequest - d.CPUPerRequest,
	}
	r.Compare = c
	r.Aims = []benchAim{
		{
			Aim:   "added p50 at most 150 µs",
			Value: c.AddedP50,
			Met:   c.AddedP50 <= micros(aimAddedP50),
			shown: plusUS(c.AddedP50),
		},
		{
			Aim:   "throughput at least 40% of direct",
			Value: c.ThroughputRatio,
			Met:   c.ThroughputRatio >= aimThroughputMin,
			shown: fmt.Sprintf("%.0f%%", 100*c.ThroughputRatio),
		},
	}
	return r
}

func newTargetResult(seq, load *phase, roundRPS []float64) targetResult {
	s, l := seq.sortedLatencies(), load.sortedLatencies()
	return targetResult{
		P50:           micros(percentile(s, 0.50)),
		P99:           micros(percentile(s, 0.99)),
		LoadedP50:     micros(percentile(l, 0.50)),
		LoadedP99:     micros(percentile(l, 0.99)),
		RPS:           ratio(float64(load.requests), load.elapsed.Seconds()),
		RoundRPS:      roundRPS,
		CPUPerRequest: ratio(micros(load.cpu), float64(load.requests)),
		Requests:      seq.requests + load.requests,
		Failures:      seq.failures + load.failures,
	}
}

// failed reports the failed requests, if there were any.
func (r *benchReport) failed() error {
	n := r.Direct.Failures + r.Airlock.Failures
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d requests failed, first: %v: %w",
		n, r.Direct.Requests+r.Airlock.Requests, r.firstErr, errFailures)
}

func (r *benchReport) print(w io.Writer) error {
	m, s, d, a, c := r.Machine, r.Settings, r.Direct, r.Airlock, r.Compare
	fmt.Fprintf(w, "\nairlock bench: tools/call of the demo echo tool, directly and through Airlock\n")
	fmt.Fprintf(w, "%s %s/%s, %d CPUs (GOMAXPROCS %d); %d interleaved rounds; "+
		"per round and target: up to %d calls from 1 client, then %gs with %d clients\n",
		m.GoVersion, m.OS, m.Arch, m.CPUs, m.GOMAXPROCS,
		s.Rounds, s.LatencyRequests, s.PhaseSeconds, s.Concurrency)
	fmt.Fprintf(w, "note: %s\n\n", r.Note)

	loaded := fmt.Sprintf("%d clients", s.Concurrency)
	rows := [][4]string{
		{"", "direct", "airlock", "airlock vs direct"},
		{"p50 latency, 1 client", us(d.P50), us(a.P50), plusUS(c.AddedP50)},
		{"p99 latency, 1 client", us(d.P99), us(a.P99), plusUS(c.AddedP99)},
		{"p50 latency, " + loaded, us(d.LoadedP50), us(a.LoadedP50), plusUS(c.AddedLoadedP50)},
		{"p99 latency, " + loaded, us(d.LoadedP99), us(a.LoadedP99), plusUS(c.AddedLoadedP99)},
		{"requests/s, " + loaded, rate(d.RPS), rate(a.RPS), fmt.Sprintf("%.0f%%", 100*c.ThroughputRatio)},
		{"CPU per request", us(d.CPUPerRequest), us(a.CPUPerRequest),
			fmt.Sprintf("%.2f× (%s)", c.CPURatio, plusUS(c.AddedCPU))},
		{"requests (failed)", counts(d), counts(a), ""},
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row[0], row[1], row[2], row[3])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "requests/s by round: direct %s; airlock %s\n\n", joinRates(d.RoundRPS), joinRates(a.RoundRPS))
	for _, aim := range r.Aims {
		fmt.Fprintf(w, "aim: %-34s %-8s %s\n", aim.Aim, aim.shown, metOrNot(aim.Met))
	}
	return nil
}

func us(v float64) string     { return fmt.Sprintf("%.0f µs", v) }
func plusUS(v float64) string { return fmt.Sprintf("%+.0f µs", v) }
func rate(v float64) string   { return fmt.Sprintf("%.0f", v) }

func counts(t targetResult) string {
	return fmt.Sprintf("%d (%d)", t.Requests, t.Failures)
}

func metOrNot(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

func joinRates(rates []float64) string {
	parts := make([]string, len(rates))
	for i, v := range rates {
		parts[i] = rate(v)
	}
	return strings.Join(parts, " ")
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ratio returns a/b, or zero when b is zero.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
