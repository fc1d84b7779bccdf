// Command ratelimit is an Airlock policy plugin that limits how often
// each agent may call each tool, with a token bucket per agent and tool:
// -rate calls per second on average, bursts of up to -burst. A call over
// the limit is denied with the limit in the reason; the agent may retry
// later.
//
//	plugins:
//	  - name: ratelimit
//	    path: /usr/local/lib/airlock/ratelimit
//	    sha256: <sha256sum of the binary>
//	    args: ["-rate", "5", "-burst", "20"]
package main

import (
	"context"
	"flag"
	"fmt"
	"sync"

	"golang.org/x/time/rate"

	"github.com/airlockhq/airlock/pkg/plugin"
)

type limiter struct {
	rate  rate.Limit
	burst int

	// mu guards buckets.
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func (l *limiter) Describe() plugin.Description {
	return plugin.Description{Name: "ratelimit", Decide: true}
}

func (l *limiter) Enrich(context.Context, map[string]any) (map[string]any, error) { return nil, nil }

func (l *limiter) Decide(_ context.Context, input map[string]any, _ plugin.PolicyDecision) (plugin.Verdict, error) {
	mcp, _ := input["mcp"].(map[string]any)
	tool, _ := mcp["tool"].(string)
	if tool == "" {
		return plugin.Verdict{Verdict: plugin.Abstain}, nil
	}
	agent, _ := input["agent"].(map[string]any)
	id, _ := agent["id"].(string)
	if !l.bucket(id + " " + tool).Allow() {
		return plugin.Verdict{Verdict: plugin.Deny, Reason: fmt.Sprintf(
			"rate limit: at most %g calls of %s per second (bursts of %d); try again shortly", float64(l.rate), tool, l.burst)}, nil
	}
	return plugin.Verdict{Verdict: plugin.Allow}, nil
}

func (l *limiter) bucket(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	return b
}

func main() {
	r := flag.Float64("rate", 5, "calls per second per agent and tool, on average")
	burst := flag.Int("burst", 10, "calls allowed in a burst")
	flag.Parse()
	plugin.Serve(&limiter{rate: rate.Limit(*r), burst: *burst, buckets: map[string]*rate.Limiter{}})
}
