package connector

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// almostOne is the largest value a random source in [0, 1) returns, so a
// delay drawn with it is the ceiling itself, less rounding.
var almostOne = math.Nextafter(1, 0)

func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestBackoffDelayCeiling(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{2, 400 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{4, time.Second},
		{31, time.Second},
		{32, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		// The ceiling is exclusive; allow the float rounding below it.
		got := b.delay(tt.attempt, fixed(almostOne))
		if got > tt.want || got < tt.want-time.Microsecond {
			t.Errorf("delay(%d) with rnd near 1 = %v, want just under %v", tt.attempt, got, tt.want)
		}
		if got := b.delay(tt.attempt, fixed(0)); got != 0 {
			t.Errorf("delay(%d) with rnd 0 = %v, want 0 (full jitter)", tt.attempt, got)
		}
		if got, want := b.delay(tt.attempt, fixed(0.5)), tt.want/2; got != want {
			t.Errorf("delay(%d) with rnd 0.5 = %v, want %v", tt.attempt, got, want)
		}
	}
}

func TestBackoffDelayCeilingNeverShrinks(t *testing.T) {
	// Initial values whose doubling overflows int64 nanoseconds before
	// attempt 32; an unchecked shift wraps to a small positive ceiling.
	tests := []Backoff{
		{Initial: 100 * time.Millisecond, Max: time.Second},
		{Initial: time.Second, Max: 24 * time.Hour},
		{Initial: 2*time.Minute + 17439*time.Millisecond, Max: 24 * time.Hour},
		{Initial: 4*time.Minute + 26288*time.Millisecond, Max: 24 * time.Hour},
		{Initial: 1<<33 + 1, Max: math.MaxInt64},
		{Initial: time.Hour, Max: time.Hour},
	}
	for _, b := range tests {
		prev := time.Duration(0)
		for attempt := range 40 {
			got := b.delay(attempt, fixed(almostOne))
			if got > b.Max {
				t.Errorf("%+v: delay(%d) = %v, above Max", b, attempt, got)
			}
			if got < prev {
				t.Errorf("%+v: delay(%d) ceiling %v is below the ceiling %v of the attempt before",
					b, attempt, got, prev)
			}
			prev = got
		}
	}
}

func TestBackoffDelayJitterRange(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, attempt := range []int{0, 2, 10} {
		ceiling := min(b.Initial<<attempt, b.Max)
		var lowest, highest time.Duration = b.Max, 0
		for range 2000 {
			d := b.delay(attempt, rnd.Float64)
			if d < 0 || d >= ceiling {
				t.Fatalf("delay(%d) = %v, want in [0, %v)", attempt, d, ceiling)
			}
			lowest, highest = min(lowest, d), max(highest, d)
		}
		// Full jitter spreads over the whole range, not just near the top.
		if lowest > ceiling/10 || highest < ceiling*9/10 {
			t.Errorf("delay(%d) over 2000 draws spans [%v, %v], want close to [0, %v)",
				attempt, lowest, highest, ceiling)
		}
	}
}

func TestJitterRange(t *testing.T) {
	for range 1000 {
		if v := jitter(); v < 0 || v >= 1 {
			t.Fatalf("jitter() = %v, want in [0, 1)", v)
		}
	}
}
