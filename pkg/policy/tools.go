package policy

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Test runs the Rego unit tests (rules named test_*, usually in
// *_test.rego files) of the policy folder dir and reports them to w. It
// returns how many passed and failed; err is for tests that could not
// run at all.
func Test(
	ctx context.Context,
	dir string,
	w io.Writer,
	verbose bool,
) (passed, failed int, err error) {
	modules, store, err := tester.LoadWithRegoVersion([]string{dir}, nil, ast.RegoV1)
	if err != nil {
		return 0, 0, fmt.Errorf("loading policy folder %s: %w", dir, err)
	}
	ch, err := tester.NewRunner().SetStore(store).CapturePrintOutput(true).Run(ctx, modules)
	if err != nil {
		return 0, 0, fmt.Errorf("running the tests of %s: %w", dir, err)
	}
	var results []*tester.Result
	for r := range ch {
		if r.Fail || r.Error != nil {
			failed++
		} else if !r.Skip {
			passed++
		}
		results = append(results, r)
	}
	rep := tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}
	resCh := make(chan *tester.Result, len(results))
	for _, r := range results {
		resCh <- r
	}
	close(resCh)
	if err := rep.Report(resCh); err != nil {
		return passed, failed, err
	}
	return passed, failed, nil
}

// Explanation is a decision with the rules that made it.
type Explanation struct {
	Decision Decision `json:"decision"`
	Allowed  bool     `json:"allowed"`
	// Rules are the rules of package airlock.authz whose bodies held for
	// this input, as "name at file:line".
	Rules []string `json:"rules"`
}

// Explain decides input like [Engine.Eval] and says which rules fired.
// It traces the evaluation, so it is for people, not for the hot path.
func (e *Engine) Explain(ctx context.Context, input map[string]any) (Explanation, error) {
	e.mu.RLock()
	c := e.cur
	e.mu.RUnlock()
	if c == nil {
		return Explanation{}, ErrNoPolicy
	}
	buf := topdown.NewBufferTracer()
	rs, err := c.query.Eval(ctx, rego.EvalInput(input), rego.EvalQueryTracer(buf))
	if err != nil {
		return Explanation{}, fmt.Errorf("evaluating policy %s: %w", c.revision, err)
	}
	d, err := decode(rs, c.revision)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Decision: d, Allowed: d.Allowed()}
	for _, ev := range *buf {
		rule, ok := ev.Node.(*ast.Rule)
		if ev.Op != topdown.ExitOp || !ok || rule.Module == nil ||
			rule.Module.Package.Path.String() != "data."+Package {
			continue
		}
		line := fmt.Sprintf("%s at %s", rule.Head.Ref(), rule.Location)
		if !slices.Contains(x.Rules, line) {
			x.Rules = append(x.Rules, line)
		}
	}
	return x, nil
}
