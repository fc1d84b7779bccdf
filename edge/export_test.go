package edge

import "time"

// SetClock replaces the clock that join tokens expire by.
func SetClock(e *Edge, now func() time.Time) { e.now = now }
