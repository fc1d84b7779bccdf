package agent

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"
)

// From MCP 2026-07-28 on (SEP-2243), a tool's input schema may bind an
// argument to a request header with "x-mcp-header": NAME, and a client
// calling the tool sends the argument's value as Mcp-Param-NAME too, so
// that gateways can route on it. A server may refuse a call without it.
// The bridge learns the bindings from the tools/list answers it relays.

// paramBinding is one argument bound to a header: the property path in
// the arguments and the header's name after Mcp-Param-.
type paramBinding struct {
	path   []string
	header string
}

// paramBindings are the bindings of each tool seen in a tools/list answer.
// It is safe for concurrent use.
type paramBindings struct {
	mu    sync.Mutex
	tools map[string][]paramBinding
}

// learn reads the bindings of every tool of a tools/list result.
func (pb *paramBindings) learn(result json.RawMessage) {
	var list struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(result, &list) != nil {
		return
	}
	pb.mu.Lock()
	defer pb.mu.Unlock()
	if pb.tools == nil {
		pb.tools = map[string][]paramBinding{}
	}
	for _, t := range list.Tools {
		var schema schemaProps
		json.Unmarshal(t.InputSchema, &schema)
		pb.tools[t.Name] = schema.bindings(nil, nil)
	}
}

type schemaProps struct {
	Properties map[string]struct {
		Header json.RawMessage `json:"x-mcp-header"`
		schemaProps
	} `json:"properties"`
}

func (s schemaProps) bindings(prefix []string, out []paramBinding) []paramBinding {
	for name, prop := range s.Properties {
		path := append(append([]string(nil), prefix...), name)
		var header string
		if json.Unmarshal(prop.Header, &header) == nil && header != "" {
			out = append(out, paramBinding{path: path, header: header})
		}
		out = prop.bindings(path, out)
	}
	return out
}

// headers returns the Mcp-Param-* headers of a tools/call's params.
func (pb *paramBindings) headers(params json.RawMessage) map[string]string {
	var call struct {
		Name      string                     `json:"name"`
		Arguments map[string]json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(params, &call) != nil {
		return nil
	}
	pb.mu.Lock()
	bound := pb.tools[call.Name]
	pb.mu.Unlock()
	out := map[string]string{}
	for _, b := range bound {
		raw, ok := argumentAt(call.Arguments, b.path)
		if !ok {
			continue
		}
		if value, ok := headerValue(raw); ok {
			out["Mcp-Param-"+b.header] = value
		}
	}
	return out
}

func argumentAt(args map[string]json.RawMessage, path []string) (json.RawMessage, bool) {
	cur, ok := args[path[0]]
	for _, part := range path[1:] {
		var obj map[string]json.RawMessage
		if !ok || json.Unmarshal(cur, &obj) != nil {
			return nil, false
		}
		cur, ok = obj[part]
	}
	return cur, ok
}

// headerValue encodes an argument for its header: a string, a boolean or
// an integer a double holds exactly; any other value is not sent. A value
// a header cannot carry as it is (outside printable ASCII, with spaces at
// its ends, or looking like an encoded one) goes base64-encoded as
// =?base64?...?=.
func headerValue(raw json.RawMessage) (string, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case bool:
		s = strconv.FormatBool(v)
	case float64:
		const maxSafe = 1<<53 - 1
		if v != math.Trunc(v) || math.Abs(v) > maxSafe {
			return "", false
		}
		s = strconv.FormatInt(int64(v), 10)
	default:
		return "", false
	}
	if needsBase64(s) {
		return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=", true
	}
	return s, true
}

func needsBase64(s string) bool {
	if s == "" {
		return false
	}
	if strings.ContainsAny(s[:1], " \t") || strings.ContainsAny(s[len(s)-1:], " \t") {
		return true
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e {
			return true
		}
	}
	return strings.HasPrefix(s, "=?base64?") && strings.HasSuffix(s, "?=")
}
