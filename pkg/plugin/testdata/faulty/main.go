// Command faulty is a plugin that misbehaves on request, for the host's
// tests: the tool name says what to do.
package main

import (
	"context"
	"os"
	"time"

	"github.com/airlockhq/airlock/pkg/plugin"
)

type faulty struct{}

func (faulty) Describe() plugin.Description {
	return plugin.Description{Name: "faulty", Enrich: true, Decide: true}
}

func (faulty) Enrich(context.Context, map[string]any) (map[string]any, error) {
	return map[string]any{"team": "blue"}, nil
}

func (faulty) Decide(ctx context.Context, input map[string]any, _ plugin.PolicyDecision) (plugin.Verdict, error) {
	mcp, _ := input["mcp"].(map[string]any)
	switch mcp["tool"] {
	case "crash":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	case "malformed":
		return plugin.Verdict{Verdict: "maybe"}, nil
	case "deny":
		return plugin.Verdict{Verdict: plugin.Deny, Reason: "faulty says no"}, nil
	}
	return plugin.Verdict{Verdict: plugin.Allow}, nil
}

func main() { plugin.Serve(faulty{}) }
