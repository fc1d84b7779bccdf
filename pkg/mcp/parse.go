package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	sjson "github.com/segmentio/encoding/json"
)

// MaxDepth bounds the nesting of a message's JSON.
const MaxDepth = 64

// CodeParseError is JSON-RPC's code for a body that is not JSON.
const CodeParseError = -32700

// Message is one JSON-RPC 2.0 message as the edge sees it: enough to
// decide on, with the body it came from untouched.
type Message struct {
	// ID is the raw id, nil for a notification.
	ID json.RawMessage
	// Method is "" for a response.
	Method string
	// Params is the raw params object, nil when absent.
	Params json.RawMessage
	// Name is the target of the method: params.name of tools/call and
	// prompts/get, params.uri of resources/read, subscribe and
	// unsubscribe, params.ref.name or params.ref.uri of
	// completion/complete; "" otherwise.
	Name string
}

// IsResponse reports whether m answers a request of the server.
func (m *Message) IsResponse() bool { return m.Method == "" }

// ParseError says why a body is not one acceptable JSON-RPC message. Code
// is the JSON-RPC error code to answer with.
type ParseError struct {
	Code int
	Msg  string
}

func (e *ParseError) Error() string { return e.Msg }

func parseErr(code int, format string, args ...any) error {
	return &ParseError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrBatch is the [ParseError] text for a JSON array body: batches let a
// request hide behind another, so they are refused.
var ErrBatch = errors.New("JSON-RPC batches are not accepted: send one message per request")

// topKeys and paramKeys are the schema keys whose case variants are
// refused: Go and other lenient decoders would read "Method" as
// "method", so a checker and a server could disagree on what was sent.
var (
	topKeys   = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramKeys = []string{
		"name", "uri", "arguments", "ref", "_meta", "cursor", "argument", "level", "task",
	}
)

// Parse checks that body is exactly one JSON-RPC 2.0 message, strictly:
// valid UTF-8, one value and nothing after it, an object (never a batch),
// no duplicate keys at any depth, also none that differ only in case, no
// case variants of schema keys, at most [MaxDepth] levels, "jsonrpc":
// "2.0", params an object, and notifications only for notification
// methods. Every error is a [*ParseError].
func Parse(body []byte) (*Message, error) {
	if !utf8.Valid(body) {
		return nil, parseErr(CodeParseError, "body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, parseErr(CodeInvalidRequest, "%s", ErrBatch)
	}
	// segmentio's validator recurses once per level of nesting, so the
	// depth is checked first: a body of a million '[' must not take the
	// edge's stack with it.
	if tooDeep(body) {
		return nil, errTooDeep
	}
	// segmentio's validator checks the syntax fast (2.5 times the standard
	// library's speed on a large answer; FuzzParse checks that the two
	// agree); the slow walk only runs to say what is wrong with a body
	// that fails.
	if !sjson.Valid(body) {
		if err := checkStructure(body); err != nil {
			return nil, err
		}
		return nil, parseErr(CodeParseError, "body is not valid JSON")
	}
	if err := scanKeys(body); err != nil {
		return nil, err
	}
	raw, ok := objectMembers(body)
	if !ok {
		return nil, parseErr(CodeInvalidRequest, "message is not a JSON object")
	}
	if err := refuseVariants(raw, topKeys, ""); err != nil {
		return nil, err
	}
	return checkEnvelope(raw)
}

func checkEnvelope(raw members) (*Message, error) {
	if version, ok := unquote(raw.get("jsonrpc")); !ok || version != "2.0" {
		return nil, parseErr(CodeInvalidRequest, `"jsonrpc" must be "2.0"`)
	}
	m := &Message{ID: raw.get("id"), Params: raw.get("params")}
	if m.ID != nil && !validID(m.ID) {
		return nil, parseErr(CodeInvalidRequest, `"id" must be a string or a number`)
	}
	if method := raw.get("method"); method != nil {
		var ok bool
		if m.Method, ok = unquote(method); !ok || m.Method == "" {
			return nil, parseErr(CodeInvalidRequest, `"method" must be a non-empty string`)
		}
	}
	hasResult := raw.get("result") != nil
	hasError := raw.get("error") != nil
	switch {
	case m.Method == "" && (m.ID == nil || hasResult == hasError):
		return nil, parseErr(
			CodeInvalidRequest,
			"message is neither a request, a notification nor a response",
		)
	case m.Method != "" && (hasResult || hasError):
		return nil, parseErr(CodeInvalidRequest, "a request must not carry result or error")
	case m.Method != "" && m.ID == nil && !strings.HasPrefix(m.Method, "notifications/"):
		return nil, parseErr(
			CodeInvalidRequest,
			"%s is a request and needs an id; only notifications/* may omit it",
			m.Method,
		)
	}
	if m.Params != nil {
		if err := m.readParams(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"':
		return true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// readParams checks params and reads the method's target name.
func (m *Message) readParams() error {
	p, ok := objectMembers(m.Params)
	if !ok {
		return parseErr(CodeInvalidParams, `"params" must be an object`)
	}
	if err := refuseVariants(p, paramKeys, "params."); err != nil {
		return err
	}
	field := ""
	switch m.Method {
	case "tools/call", "prompts/get":
		field = "name"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		field = "uri"
	case "completion/complete":
		return m.readRef(p.get("ref"))
	}
	if field == "" {
		return nil
	}
	if v := p.get(field); v != nil {
		if m.Name, ok = unquote(v); !ok {
			return parseErr(CodeInvalidParams, "params.%s of %s must be a string", field, m.Method)
		}
	}
	return nil
}

// readRef reads the target of completion/complete from its reference:
// the name of a ref/prompt, the uri of a ref/resource. A reference of
// another type, or one that carries the other field too, is refused, so
// that no server can read a different target than the one checked.
func (m *Message) readRef(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	ref, ok := objectMembers(raw)
	if !ok {
		return parseErr(CodeInvalidParams, "params.ref must be an object")
	}
	if err := refuseVariants(ref, []string{"type", "name", "uri"}, "params.ref."); err != nil {
		return err
	}
	typ, _ := unquote(ref.get("type"))
	field, other := "", ""
	switch typ {
	case "ref/prompt":
		field, other = "name", "uri"
	case "ref/resource":
		field, other = "uri", "name"
	default:
		return parseErr(
			CodeInvalidParams,
			"params.ref.type %q is neither ref/prompt nor ref/resource",
			typ,
		)
	}
	if ref.get(other) != nil {
		return parseErr(CodeInvalidParams, "params.ref of type %s must not carry %q", typ, other)
	}
	if m.Name, ok = unquote(ref.get(field)); !ok {
		return parseErr(CodeInvalidParams, "params.ref.%s must be a string", field)
	}
	return nil
}

// refuseVariants refuses a key that matches a schema key only when case
// is ignored.
func refuseVariants(obj members, schema []string, where string) error {
	for _, member := range obj {
		k := member.key
		for _, s := range schema {
			if k != s && strings.EqualFold(k, s) {
				return parseErr(
					CodeInvalidRequest,
					"key %q differs from %q only in case",
					where+k,
					where+s,
				)
			}
		}
	}
	return nil
}

// CodeInvalidParams is JSON-RPC's code for params of the wrong shape.
const CodeInvalidParams = -32602

// frame is one open object or array while checkStructure walks a body.
type frame struct {
	object bool
	keys   map[string]bool // folded keys seen so far
	isKey  bool            // the next token of this object is a key
}

// checkStructure walks every token: one value, no trailing data, no
// duplicate or case-folded duplicate keys, bounded depth.
func checkStructure(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF && len(stack) == 0 {
			return parseErr(CodeParseError, "body is empty")
		}
		if err != nil {
			return parseErr(CodeParseError, "body is not valid JSON: %v", err)
		}
		n := len(stack)
		if n > 0 && stack[n-1].object && stack[n-1].isKey && tok != json.Delim('}') {
			if err := stack[n-1].addKey(tok); err != nil {
				return err
			}
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= MaxDepth {
				return parseErr(CodeInvalidRequest, "message nests deeper than %d levels", MaxDepth)
			}
			stack = append(stack, &frame{
				object: tok == json.Delim('{'),
				keys:   map[string]bool{},
				isKey:  true,
			})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 {
			stack[n-1].isKey = true
			continue
		}
		// One whole value has been read: nothing may follow it.
		if _, err := dec.Token(); err != io.EOF {
			return parseErr(CodeParseError, "body holds data after the JSON-RPC message")
		}
		return nil
	}
}

// addKey records one key of the object, refusing it when the object
// already has it, also under another case.
func (f *frame) addKey(tok json.Token) error {
	key, _ := tok.(string)
	// Upper then lower case folds the pairs that lower case alone misses
	// (ſ and s, the Kelvin sign and k), as lenient decoders match them.
	folded := strings.ToLower(strings.ToUpper(key))
	if f.keys[folded] {
		return parseErr(
			CodeInvalidRequest,
			"key %q appears twice (keys must be unique, also ignoring case)",
			key,
		)
	}
	f.keys[folded] = true
	f.isKey = false
	return nil
}
