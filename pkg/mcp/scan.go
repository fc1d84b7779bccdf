package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// errTooDeep is the answer to a body nested deeper than MaxDepth.
var errTooDeep = parseErr(CodeInvalidRequest, "message nests deeper than %d levels", MaxDepth)

// tooDeep reports whether body, valid JSON or not, opens more than
// MaxDepth arrays and objects at once, counting the brackets outside
// strings. On a body that is not valid JSON the count may be off after
// the first error, where any validator stops.
func tooDeep(body []byte) bool {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{', '[':
			if depth++; depth > MaxDepth {
				return true
			}
		case '}', ']':
			depth = max(depth-1, 0)
		case '"':
			i = stringEnd(body, i)
		}
	}
	return false
}

// scanKeys walks a body that the syntax check accepted and checks what
// the standard decoder does not: nesting at most MaxDepth, and no object
// with two keys that are equal when case is folded (escapes decoded
// first). It allocates only for the keys it compares.
func scanKeys(body []byte) error {
	type level struct {
		object    bool
		expectKey bool
		keys      []string
	}
	var room [8]level // most messages nest less: no allocation for them
	stack := room[:0]
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return errTooDeep
			}
			stack = append(stack, level{object: body[i] == '{', expectKey: body[i] == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		case '"':
			end := stringEnd(body, i)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
				key, err := keyOf(body[i : end+1])
				if err != nil {
					return err
				}
				folded := foldKey(key)
				for _, k := range stack[n-1].keys {
					if k == folded {
						return parseErr(CodeInvalidRequest, "key %q appears twice (keys must be unique, also ignoring case)", key)
					}
				}
				stack[n-1].keys = append(stack[n-1].keys, folded)
				stack[n-1].expectKey = false
			}
			i = end
		}
	}
	return nil
}

// foldKey maps a key to the form two keys share when they are equal with
// case ignored. ASCII keys, nearly all of them, fold without allocating
// when they are already lower case.
func foldKey(key string) string {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(strings.ToUpper(key))
		}
		if 'A' <= c && c <= 'Z' {
			return strings.ToLower(key)
		}
	}
	return key
}

// stringEnd returns the index of the quote that closes the string opening
// at body[start]. It searches with bytes.IndexByte, which is many times
// faster than a loop over the bytes on the long strings of large answers,
// and looks at every byte at most twice however many escapes there are.
func stringEnd(body []byte, start int) int {
	quote := -1 // the first quote at or after i
	for i := start + 1; i < len(body); {
		if quote < i {
			k := bytes.IndexByte(body[i:], '"')
			if k < 0 {
				break
			}
			quote = i + k
		}
		esc := bytes.IndexByte(body[i:quote], '\\')
		if esc < 0 {
			return quote
		}
		i += esc + 2 // past the escape and the byte it escapes
	}
	return len(body) - 1
}

// keyOf decodes a quoted key, escapes and all.
func keyOf(quoted []byte) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", parseErr(CodeParseError, "body is not valid JSON: %v", err)
	}
	return s, nil
}

// member is one key of a JSON object with its value's raw bytes.
type member struct {
	key   string
	value json.RawMessage
}

// members are an object's members in the order they were written.
type members []member

// get returns the raw value of key, nil when the object has none.
func (ms members) get(key string) json.RawMessage {
	for _, m := range ms {
		if m.key == key {
			return m.value
		}
	}
	return nil
}

// objectMembers splits obj, valid JSON already, into its members without
// decoding their values. It reports false when obj is not an object.
func objectMembers(obj []byte) (members, bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	var ms members
	for {
		i = skipSpace(obj, i+1)
		if obj[i] == '}' {
			return ms, true
		}
		end := stringEnd(obj, i)
		key, err := keyOf(obj[i : end+1])
		if err != nil {
			return nil, false
		}
		start := skipSpace(obj, skipSpace(obj, end+1)+1) // past the colon
		i = valueEnd(obj, start)
		ms = append(ms, member{key: key, value: bytes.TrimRight(obj[start:i], " \t\r\n")})
		if obj[i] == '}' {
			return ms, true
		}
	}
}

// valueEnd returns the index of the comma or brace that ends the value
// starting at obj[start], inside an object.
func valueEnd(obj []byte, start int) int {
	depth := 0
	for i := start; i < len(obj); i++ {
		switch obj[i] {
		case '"':
			i = stringEnd(obj, i)
		case '{', '[':
			depth++
		case ']':
			depth--
		case '}':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return len(obj) - 1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// unquote decodes a raw JSON string; it reports false for any other value.
func unquote(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
