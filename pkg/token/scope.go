package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ScopePrefix starts every Airlock scope item.
const ScopePrefix = "mcp:"

// Scope is a parsed access-token scope: a set of items, each granting a
// resource, a method on a resource, or one named target of a method
// (a tool, a prompt, a resource URI).
//
// The grammar, items separated by spaces (RFC 6749 section 3.3):
//
//	mcp:<resource>                    everything on the resource
//	mcp:<resource>:<method>           one MCP method, every target
//	mcp:<resource>:<method>:<name>    one method on one target
//
// <resource> is an Airlock resource name, <method> an MCP method such as
// tools/call, and <name> runs to the end of the item, so it may hold
// colons (resources/read on a URI). Any item that names a resource also
// lets the agent hold a session there: initialize, ping, notifications,
// the list methods and answers to the server's own requests (see
// [SessionMethod]).
type Scope []ScopeItem

// ScopeItem is one item of a [Scope]. An empty Method or Name means any.
type ScopeItem struct {
	Resource string
	Method   string
	Name     string
}

// String returns the item in its wire form.
func (i ScopeItem) String() string {
	s := ScopePrefix + i.Resource
	if i.Method != "" {
		s += ":" + i.Method
		if i.Name != "" {
			s += ":" + i.Name
		}
	}
	return s
}

// covers reports whether i grants everything o grants.
func (i ScopeItem) covers(o ScopeItem) bool {
	switch {
	case i.Resource != o.Resource:
		return false
	case i.Method == "":
		return true
	case i.Method != o.Method:
		return false
	default:
		return i.Name == "" || i.Name == o.Name
	}
}

// ErrEmptyScope is returned by [ParseScope] for a scope without items.
var ErrEmptyScope = errors.New("scope names nothing")

// ParseScope parses a space-separated scope. validResource, if not nil,
// says which resource names exist; an item for any other is an error.
func ParseScope(s string, validResource func(string) bool) (Scope, error) {
	var out Scope
	var errs []error
	for _, raw := range strings.Fields(s) {
		item, err := parseItem(raw)
		if err == nil && validResource != nil && !validResource(item.Resource) {
			err = fmt.Errorf("scope %q names resource %q, which this edge does not serve", raw, item.Resource)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrEmptyScope
	}
	return out, nil
}

func parseItem(raw string) (ScopeItem, error) {
	rest, ok := strings.CutPrefix(raw, ScopePrefix)
	if !ok {
		return ScopeItem{}, fmt.Errorf("scope %q does not start with %q", raw, ScopePrefix)
	}
	res, rest, hasMethod := strings.Cut(rest, ":")
	method, name, hasName := strings.Cut(rest, ":")
	if res == "" || (hasMethod && method == "") || (hasName && name == "") {
		return ScopeItem{}, fmt.Errorf("scope %q has an empty part (want mcp:<resource>[:<method>[:<name>]])", raw)
	}
	return ScopeItem{Resource: res, Method: method, Name: name}, nil
}

// String returns the scope in its wire form, items in their order.
func (s Scope) String() string {
	parts := make([]string, len(s))
	for i, item := range s {
		parts[i] = item.String()
	}
	return strings.Join(parts, " ")
}

// Covers reports whether s grants everything o grants: every item of o
// lies within an item of s.
func (s Scope) Covers(o Scope) bool {
	for _, oi := range o {
		if !slices.ContainsFunc(s, func(si ScopeItem) bool { return si.covers(oi) }) {
			return false
		}
	}
	return true
}

// Resources returns the resource names the scope touches, in order.
func (s Scope) Resources() []string {
	var out []string
	for _, item := range s {
		if !slices.Contains(out, item.Resource) {
			out = append(out, item.Resource)
		}
	}
	return out
}

// Allows reports whether the scope lets an agent send method with the
// target name to resource. Session methods need any item on the
// resource; every other method needs an item that covers it.
func (s Scope) Allows(resource, method, name string) bool {
	if SessionMethod(method) {
		return slices.Contains(s.Resources(), resource)
	}
	want := ScopeItem{Resource: resource, Method: method, Name: name}
	return slices.ContainsFunc(s, func(si ScopeItem) bool { return si.covers(want) })
}

// Needed returns the narrowest scope item that would allow method with
// name on resource, for an insufficient_scope challenge.
func Needed(resource, method, name string) string {
	if SessionMethod(method) {
		return ScopeItem{Resource: resource}.String()
	}
	return ScopeItem{Resource: resource, Method: method, Name: name}.String()
}

// SessionMethod reports whether an MCP message only keeps a session
// going or discovers what is there, rather than reaching data: the
// lifecycle, ping, notifications, the list methods, and answers to the
// server's requests (method ""). What a listing shows is the policy's to
// filter, not the scope's.
func SessionMethod(method string) bool {
	switch method {
	case "", "initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		return true
	}
	return strings.HasPrefix(method, "notifications/")
}
