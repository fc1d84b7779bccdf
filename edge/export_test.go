package edge

import (
	"context"
	"net/http"
	"time"
)

// SetClock replaces the edge's clock: join-token expiry, token issue and
// the validity of presented certificates.
func SetClock(e *Edge, now func() time.Time) { e.clockOverride.Store(&now) }

// Crash stops e the way a killed process stops: its UDP socket goes
// first, so no connector hears a CONNECTION_CLOSE; the rest is released
// so that a new edge can take the same address and data folder.
func Crash(e *Edge) {
	e.udp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e.Shutdown(ctx)
}

// TamperTunnel makes e pass every tunneled request through fn before it
// crosses the tunnel, as a forged or broken edge might; nil stops it.
func TamperTunnel(e *Edge, fn func(*http.Request)) {
	if fn == nil {
		e.tamper.Store(nil)
		return
	}
	e.tamper.Store(&fn)
}
