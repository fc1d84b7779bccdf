// Command argguard is an Airlock policy plugin that denies tool and
// prompt arguments carrying secrets (private keys, cloud access keys,
// bearer tokens), and, with -allow-prefix, path arguments outside the
// allowed prefixes. It is a second line behind the policy: it looks at
// every string in the arguments, at any depth, whatever the tool.
//
//	plugins:
//	  - name: argguard
//	    path: /usr/local/lib/airlock/argguard
//	    sha256: <sha256sum of the binary>
//	    args: ["-allow-prefix", "/srv/shared/", "-path-keys", "path,file,dir"]
package main

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"strings"

	"github.com/airlockhq/airlock/pkg/plugin"
)

// secrets are patterns of credentials that have no business in a tool's
// arguments.
var secrets = []struct {
	name string
	re   *regexp.Regexp
}{
	{"a private key", regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)},
	{"an AWS access key", regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{"a GitHub token", regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,}\b`)},
	{"a Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},
	{"a bearer token", regexp.MustCompile(`(?i)\bbearer\s+[a-z0-9._~+/-]{20,}=*`)},
}

type guard struct {
	prefixes []string
	pathKeys map[string]bool
}

func (g *guard) Describe() plugin.Description {
	return plugin.Description{Name: "argguard", Decide: true}
}

func (g *guard) Enrich(context.Context, map[string]any) (map[string]any, error) { return nil, nil }

func (g *guard) Decide(_ context.Context, input map[string]any, _ plugin.PolicyDecision) (plugin.Verdict, error) {
	mcp, _ := input["mcp"].(map[string]any)
	args, _ := mcp["arguments"].(map[string]any)
	if reason := g.check("", args); reason != "" {
		return plugin.Verdict{Verdict: plugin.Deny, Reason: reason}, nil
	}
	return plugin.Verdict{Verdict: plugin.Abstain}, nil
}

// check walks v and returns why it must be denied, or "".
func (g *guard) check(key string, v any) string {
	switch t := v.(type) {
	case string:
		for _, s := range secrets {
			if s.re.MatchString(t) {
				return fmt.Sprintf("argument %s carries %s", key, s.name)
			}
		}
		if g.pathKeys[strings.ToLower(lastKey(key))] && len(g.prefixes) > 0 && !underAny(t, g.prefixes) {
			return fmt.Sprintf("argument %s (%q) is outside the allowed paths %s", key, t, strings.Join(g.prefixes, ", "))
		}
	case map[string]any:
		for k, e := range t {
			if r := g.check(join(key, k), e); r != "" {
				return r
			}
		}
	case []any:
		for i, e := range t {
			if r := g.check(fmt.Sprintf("%s[%d]", key, i), e); r != "" {
				return r
			}
		}
	}
	return ""
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func lastKey(k string) string {
	if i := strings.LastIndex(k, "."); i >= 0 {
		return k[i+1:]
	}
	return k
}

// underAny reports whether path lies under one of the prefixes, with no
// dot segment to climb out.
func underAny(path string, prefixes []string) bool {
	if strings.Contains(path, "..") {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func main() {
	prefixes := flag.String("allow-prefix", "", "comma-separated prefixes that path arguments must start with (none: no path rule)")
	keys := flag.String("path-keys", "path,file,filename,dir,directory", "argument names that hold paths")
	flag.Parse()
	g := &guard{pathKeys: map[string]bool{}}
	for _, p := range strings.Split(*prefixes, ",") {
		if p = strings.TrimSpace(p); p != "" {
			g.prefixes = append(g.prefixes, p)
		}
	}
	for _, k := range strings.Split(*keys, ",") {
		g.pathKeys[strings.ToLower(strings.TrimSpace(k))] = true
	}
	plugin.Serve(g)
}
