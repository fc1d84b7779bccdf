package latency

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s Samples
	if got := s.Percentile(50); got != 0 {
		t.Errorf("Percentile(50) of nothing = %v, want 0", got)
	}
	for i := 100; i >= 1; i-- {
		s.durations = append(s.durations, time.Duration(i)*time.Microsecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Microsecond}, {99, 99 * time.Microsecond}, {100, 100 * time.Microsecond}, {0, time.Microsecond}} {
		if got := s.Percentile(tt.p); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}
