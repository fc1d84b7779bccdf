// Package latency reports percentiles of per-operation durations in
// benchmarks, for targets stated as a p50 rather than as a mean: a mean
// folds the garbage collector's pauses and a noisy neighbour's bursts
// into every operation.
package latency

import (
	"slices"
	"testing"
	"time"
)

// Samples collects one duration per operation.
type Samples struct {
	durations []time.Duration
}

// Time runs op and records how long it took.
func (s *Samples) Time(op func()) {
	start := time.Now()
	op()
	s.durations = append(s.durations, time.Since(start))
}

// Percentile returns the duration below which p percent of the samples
// fall, 0 when there are none.
func (s *Samples) Percentile(p float64) time.Duration {
	if len(s.durations) == 0 {
		return 0
	}
	sorted := slices.Clone(s.durations)
	slices.Sort(sorted)
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// Report adds p50-µs and p99-µs to the benchmark's output.
func (s *Samples) Report(b *testing.B) {
	b.ReportMetric(float64(s.Percentile(50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(s.Percentile(99).Nanoseconds())/1e3, "p99-µs")
}
