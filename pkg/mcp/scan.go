package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
)

// scanKeys walks a body that json.Valid accepted and checks what the
// standard decoder does not: nesting at most MaxDepth, and no object with
// two keys that are equal when case is folded (escapes decoded first). It
// allocates only for the keys it compares.
func scanKeys(body []byte) error {
	type level struct {
		object    bool
		expectKey bool
		keys      []string
	}
	var stack []level
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return parseErr(CodeInvalidRequest, "message nests deeper than %d levels", MaxDepth)
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
				folded := strings.ToLower(strings.ToUpper(key))
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

// stringEnd returns the index of the quote that closes the string opening
// at body[start].
func stringEnd(body []byte, start int) int {
	for i := start + 1; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '"':
			return i
		}
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
