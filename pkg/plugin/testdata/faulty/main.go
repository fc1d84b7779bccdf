// Command faulty is a plugin that misbehaves on request, for the host's
// tests: the tool name says what to do.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
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
	tool, _ := mcp["tool"].(string)
	if said, ok := strings.CutPrefix(tool, "say "); ok {
		return plugin.Verdict{Verdict: plugin.Deny, Reason: said}, nil
	}
	switch tool {
	case "crash":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	case "malformed":
		return plugin.Verdict{Verdict: "maybe"}, nil
	case "error":
		return plugin.Verdict{}, errors.New("the plugin failed on purpose")
	case "deadline":
		deadline, ok := ctx.Deadline()
		if !ok {
			return plugin.Verdict{Verdict: plugin.Deny, Reason: "no deadline"}, nil
		}
		left := time.Until(deadline).Milliseconds()
		return plugin.Verdict{Verdict: plugin.Deny, Reason: fmt.Sprintf("deadline in %d ms", left)}, nil
	case "deny":
		return plugin.Verdict{Verdict: plugin.Deny, Reason: "faulty says no"}, nil
	}
	return plugin.Verdict{Verdict: plugin.Allow}, nil
}

func main() { plugin.Serve(faulty{}) }
