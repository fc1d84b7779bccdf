package connector

import (
	"math/rand/v2"
	"time"
)

// delay returns the wait before redial number attempt (0 for the first
// redial): uniform in [0, min(max, initial*2^attempt)], the "full jitter"
// that keeps many connectors from redialing in step. rnd returns a float in
// [0, 1).
func (b Backoff) delay(attempt int, rnd func() float64) time.Duration {
	ceiling := b.Max
	if attempt < 32 {
		// A shift that overflows can wrap to a small positive value.
		if d := b.Initial << attempt; d > 0 && d>>attempt == b.Initial && d < b.Max {
			ceiling = d
		}
	}
	return time.Duration(rnd() * float64(ceiling))
}

func jitter() float64 { return rand.Float64() }
