package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// recoveryLimit is how long a restarted target may take to serve again
// before the row is a failure.
const recoveryLimit = 90 * time.Second

// firstGoodCalls crashes a process and starts it again (r), and returns
// for each target the time from the start to its first good call,
// calling every 10 ms with a 2 s timeout per call.
func firstGoodCalls(ctx context.Context, targets []*target, r restart) ([]time.Duration, error) {
	if err := r.crash(); err != nil {
		return nil, fmt.Errorf("killing: %w", err)
	}
	began := time.Now()
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf("starting again: %w", err)
	}
	took := make([]time.Duration, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			for n := 0; ; n++ {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := call(cctx, t, 0, n)
				cancel()
				if err == nil {
					took[i] = time.Since(began)
					return
				}
				if time.Since(began) > recoveryLimit || ctx.Err() != nil {
					errs[i] = fmt.Errorf("%s: no good call within %s: %w", t.name, recoveryLimit, err)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return took, errors.Join(errs...)
}

// tunnelsRow is the memory that n more idle tunnels cost.
type tunnelsRow struct {
	name      string
	n         int
	perTunnel int64 // growth of the edge's (frps's) memory per tunnel
	client    int64 // memory of one idle connector (frpc) process
	err       error
}

// idleTunnelSettle is how long new tunnels get to connect and settle
// before the memory is read.
const idleTunnelSettle = 3 * time.Second

// measureIdleTunnels prepares n idle tunnel clients, starts them, and
// measures what they cost the server they connect to, and each of them.
func measureIdleTunnels(ctx context.Context, name string, server func() []int, n int,
	prepare func(context.Context, int) error, start func(context.Context) error,
	clients func() []int) tunnelsRow {
	r := tunnelsRow{name: name, n: n}
	if r.err = prepare(ctx, n); r.err != nil {
		return r
	}
	time.Sleep(idleTunnelSettle)
	before := rssOf(server())
	if r.err = start(ctx); r.err != nil {
		return r
	}
	time.Sleep(idleTunnelSettle)
	for _, pid := range clients() {
		if err := syscall.Kill(pid, 0); err != nil {
			r.err = fmt.Errorf("an idle tunnel's process %d exited", pid)
			return r
		}
	}
	r.perTunnel = (rssOf(server()) - before) / int64(n)
	r.client = rssOf(clients()) / int64(n)
	return r
}
