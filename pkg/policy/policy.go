// Package policy decides MCP requests with OPA (Rego v1, package
// airlock.authz). The contract, documented in docs/policy.md: the edge
// reads allow (default false), deny (a set of reason strings) and reason;
// a request passes only when allow is true and deny is empty, so a rule
// in any file can veto. A policy is a folder of .rego files, with JSON or
// YAML data documents beside them; files ending in _test.rego are unit
// tests for `airlock policy test` and are not loaded for decisions.
//
// An [Engine] prepares the query once per policy revision and evaluates
// it per request. Reload compiles the folder again and keeps the last
// good policy when the new one does not compile; without any good policy
// every request is denied.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/airlockhq/airlock/pkg/logkey"
)

// Package is the Rego package the edge queries.
const Package = "airlock.authz"

// Queries the engine prepares. Decisions ask only for allow and deny, so
// that no other rule of the package is evaluated on the hot path; reason
// only when the answer is a denial; explanations for the whole document.
// The comprehensions make an undefined rule an empty list, never an
// undefined query.
const (
	query       = "data.airlock.authz"
	decideQuery = "allow := [a | a := data.airlock.authz.allow]; deny := [m | some m in data.airlock.authz.deny]"
	reasonQuery = "reason := [r | r := data.airlock.authz.reason]"
)

// ErrNoPolicy is the cause of a denial when no policy has ever loaded.
var ErrNoPolicy = errors.New("no policy is loaded")

// Decision is the policy's answer for one input.
type Decision struct {
	// Allow is the policy's allow.
	Allow bool
	// Deny are the messages of the deny rules that matched, sorted.
	Deny []string
	// Reason is the policy's reason, if it sets one.
	Reason string
	// Revision names the policy that decided.
	Revision string
}

// Allowed reports whether the request passes: allow and no deny.
func (d Decision) Allowed() bool { return d.Allow && len(d.Deny) == 0 }

// Message says why a request was denied, for the agent: the deny
// messages, else the reason, else a default.
func (d Decision) Message() string {
	switch {
	case len(d.Deny) > 0:
		return strings.Join(d.Deny, "; ")
	case d.Reason != "":
		return d.Reason
	}
	return "no policy rule allows this request"
}

// compiled is one prepared revision of the policy.
type compiled struct {
	query    rego.PreparedEvalQuery // the whole document, for Explain
	decide   rego.PreparedEvalQuery
	reason   rego.PreparedEvalQuery
	revision string
	files    []string
}

// Engine evaluates the policy of a folder. It is safe for concurrent use.
type Engine struct {
	dir    string
	logger *slog.Logger

	// mu guards cur, fingerprint and lastErr.
	mu          sync.RWMutex
	cur         *compiled
	fingerprint string
	lastErr     error

	// OnReload, if set before Watch, is called after every reload with
	// its error (nil for success). Not called for unchanged folders.
	OnReload func(revision string, err error)
}

// New returns an engine for the policy at dir, a folder or an OPA bundle
// file (.tar.gz), and loads it. A folder
// that does not compile, or has no file of package airlock.authz, is an
// error that names the file and line; the engine is returned anyway and
// denies everything until a reload succeeds.
func New(ctx context.Context, dir string, logger *slog.Logger) (*Engine, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{dir: dir, logger: logger.With(logkey.Component, "policy")}
	return e, e.Reload(ctx)
}

// Dir returns the policy folder.
func (e *Engine) Dir() string { return e.dir }

// Revision returns the revision of the policy in force, "" if none.
func (e *Engine) Revision() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.cur == nil {
		return ""
	}
	return e.cur.revision
}

// Err returns the error of the last reload, nil if it succeeded.
func (e *Engine) Err() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.lastErr
}

// Reload compiles the folder again. On error the policy in force stays.
func (e *Engine) Reload(ctx context.Context) error {
	fp, _ := fingerprint(e.dir)
	c, err := compile(ctx, e.dir)
	e.mu.Lock()
	e.fingerprint = fp
	e.lastErr = err
	if err == nil {
		e.cur = c
	}
	e.mu.Unlock()
	return err
}

// Eval decides input. An evaluation error is returned with a denying
// Decision; the caller denies.
func (e *Engine) Eval(ctx context.Context, input map[string]any) (d Decision, err error) {
	defer func() {
		// The lazy conversion panics on a value JSON cannot hold (a
		// channel, a function): that is an error, so the request is denied.
		if p := recover(); p != nil {
			d, err = Decision{Revision: d.Revision}, fmt.Errorf("encoding policy input: %v", p)
		}
	}()
	e.mu.RLock()
	c := e.cur
	e.mu.RUnlock()
	if c == nil {
		return Decision{}, ErrNoPolicy
	}
	// The input is converted to OPA's form lazily, only the parts a rule
	// reads: most rules look at a handful of the input's fields.
	value := ast.LazyObject(input)
	rs, err := c.decide.Eval(ctx, rego.EvalParsedInput(value))
	if err != nil {
		return Decision{Revision: c.revision},
			fmt.Errorf("evaluating policy %s: %w", c.revision, err)
	}
	d, err = decodeBindings(rs, c.revision)
	if err != nil || d.Allowed() || len(d.Deny) > 0 {
		return d, err
	}
	// Denied for want of an allow: the agent is told the reason.
	rs, err = c.reason.Eval(ctx, rego.EvalParsedInput(value))
	if err != nil {
		return d, fmt.Errorf("evaluating policy %s: %w", c.revision, err)
	}
	if len(rs) > 0 {
		if list, _ := rs[0].Bindings["reason"].([]any); len(list) > 0 {
			d.Reason = fmt.Sprint(list[0])
		}
	}
	return d, nil
}

// decodeBindings reads the answer of decideQuery.
func decodeBindings(rs rego.ResultSet, revision string) (Decision, error) {
	d := Decision{Revision: revision}
	if len(rs) == 0 {
		return d, fmt.Errorf("policy %s: the decision query was undefined", revision)
	}
	allow, _ := rs[0].Bindings["allow"].([]any)
	if len(allow) > 0 {
		b, isBool := allow[0].(bool)
		if !isBool {
			return d, fmt.Errorf("policy %s: allow is %T, want a boolean", revision, allow[0])
		}
		d.Allow = b
	}
	deny, _ := rs[0].Bindings["deny"].([]any)
	for _, m := range deny {
		d.Deny = append(d.Deny, fmt.Sprint(m))
	}
	sort.Strings(d.Deny)
	return d, nil
}

// decode reads allow, deny and reason from the package's document.
func decode(rs rego.ResultSet, revision string) (Decision, error) {
	d := Decision{Revision: revision}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return d, nil
	}
	doc, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return d, fmt.Errorf("policy %s: data.%s is not an object", revision, Package)
	}
	if v, present := doc["allow"]; present {
		allow, isBool := v.(bool)
		if !isBool {
			return d, fmt.Errorf("policy %s: allow is %T, want a boolean", revision, v)
		}
		d.Allow = allow
	}
	if v, present := doc["deny"]; present {
		list, isList := v.([]any)
		if !isList {
			return d, fmt.Errorf("policy %s: deny is %T, want a set of strings", revision, v)
		}
		for _, m := range list {
			d.Deny = append(d.Deny, fmt.Sprint(m))
		}
		sort.Strings(d.Deny)
	}
	if v, present := doc["reason"]; present {
		d.Reason = fmt.Sprint(v)
	}
	return d, nil
}

// isTestFile reports whether a file holds Rego unit tests.
func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// compile loads and prepares the folder's policy.
func compile(ctx context.Context, dir string) (*compiled, error) {
	modules, data, err := load(dir)
	if err != nil {
		return nil, err
	}
	// A policy folder that carries its own tests must pass them before it
	// decides anything.
	if hasTests(dir) {
		var out strings.Builder
		_, failed, err := Test(ctx, dir, &out, false)
		if err != nil {
			return nil, err
		}
		if failed > 0 {
			return nil, fmt.Errorf(
				"policy %s fails %d of its own tests (airlock policy test %s):\n%s",
				dir,
				failed,
				dir,
				out.String(),
			)
		}
	}
	opts := []func(*rego.Rego){
		rego.SetRegoVersion(ast.RegoV1),
		rego.Store(inmem.NewFromObjectWithOpts(data,
			inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))),
		// A builtin that fails (a division by zero, a bad regex) is an
		// error, not an undefined value a policy could mistake for "no
		// objection": the request is denied.
		rego.StrictBuiltinErrors(true),
	}
	var files []string
	found := false
	for name, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
		files = append(files, name)
		found = found || m.Package.Path.String() == "data."+Package
	}
	if !found {
		return nil, fmt.Errorf("policy folder %s has no .rego file of package %s", dir, Package)
	}
	var prepared [3]rego.PreparedEvalQuery
	for i, q := range []string{query, decideQuery, reasonQuery} {
		pq, err := rego.New(append(slices.Clone(opts), rego.Query(q))...).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("compiling policy %s: %w", dir, err)
		}
		prepared[i] = pq
	}
	slices.Sort(files)
	rev, _ := fingerprint(dir)
	return &compiled{
		query:    prepared[0],
		decide:   prepared[1],
		reason:   prepared[2],
		revision: rev,
		files:    files,
	}, nil
}

// hasTests reports whether the policy folder dir holds *_test.rego files.
func hasTests(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isTestFile(d.Name()) {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// load reads the policy at path: a folder of .rego and data files, or an
// OPA bundle (a .tar.gz file built with `opa build`).
func load(path string) (map[string]*ast.Module, map[string]any, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading policy: %w", err)
	}
	fl := loader.NewFileLoader().WithRegoVersion(ast.RegoV1)
	if !info.IsDir() {
		// A local bundle file is trusted like a local folder; a bundle
		// from a server was verified by the Fetcher before it was written.
		b, err := fl.WithSkipBundleVerification(true).AsBundle(path)
		if err != nil {
			return nil, nil, fmt.Errorf("loading policy bundle %s: %w", path, err)
		}
		modules := map[string]*ast.Module{}
		for _, m := range b.Modules {
			if !isTestFile(m.Path) {
				modules[m.Path] = m.Parsed
			}
		}
		return modules, b.Data, nil
	}
	isTest := func(_ string, info fs.FileInfo, _ int) bool {
		return !info.IsDir() && isTestFile(info.Name())
	}
	res, err := fl.Filtered([]string{path}, isTest)
	if err != nil {
		return nil, nil, fmt.Errorf("loading policy folder %s: %w", path, err)
	}
	return res.ParsedModules(), res.Documents, nil
}

// fingerprint hashes the names and contents of the folder's policy and
// data files: the revision, and what Watch compares.
func fingerprint(dir string) (string, error) {
	h := sha256.New()
	if info, err := os.Stat(dir); err == nil && !info.IsDir() {
		data, err := os.ReadFile(dir)
		h.Write(data)
		return hex.EncodeToString(h.Sum(nil))[:12], err
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".rego", ".json", ".yaml", ".yml":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
		h.Write(data)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// Watch reloads the policy whenever the folder's files change, checking
// every interval, until ctx ends. A reload that fails keeps the last
// good policy and says so in the log and to OnReload.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, _ := fingerprint(e.dir)
		e.mu.RLock()
		same := fp == e.fingerprint
		e.mu.RUnlock()
		if same {
			continue
		}
		err := e.Reload(ctx)
		if err != nil {
			e.logger.Error("policy reload failed, keeping the last good policy",
				logkey.Revision, e.Revision(), logkey.Error, err)
		} else {
			e.logger.Info("policy reloaded", logkey.Revision, e.Revision())
		}
		if e.OnReload != nil {
			e.OnReload(e.Revision(), err)
		}
	}
}
