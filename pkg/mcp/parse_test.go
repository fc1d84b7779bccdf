package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	sjson "github.com/segmentio/encoding/json"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, body, method, target string
		response                   bool
	}{
		{"tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_note","arguments":{"title":"a"}}}`, "tools/call", "read_note", false},
		{"string id", `{"jsonrpc":"2.0","id":"x","method":"tools/list"}`, "tools/list", "", false},
		{"resources/read", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a:b"}}`, "resources/read", "file:///a:b", false},
		{"prompts/get", `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", "p", false},
		{"completion", `{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"b"}}}`, "completion/complete", "p", false},
		{"completion of a resource", `{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"note://{t}"},"argument":{"name":"t","value":"b"}}}`, "completion/complete", "note://{t}", false},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "notifications/initialized", "", false},
		{"response", `{"jsonrpc":"2.0","id":5,"result":{}}`, "", "", true},
		{"error response", `{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"no"}}`, "", "", true},
		{"whitespace around", " \n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n ", "ping", "", false},
		{"same key in sibling objects", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":{"name":1},"y":{"name":2}}}}`, "tools/call", "a", false},
		{"empty objects and arrays", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"o":{},"l":[],"n":[[],{}]}}}`, "tools/call", "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if m.Method != tt.method || m.Name != tt.target || m.IsResponse() != tt.response {
				t.Errorf("Parse() = method %q name %q response %v, want %q %q %v",
					m.Method, m.Name, m.IsResponse(), tt.method, tt.target, tt.response)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	deep := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":` +
		strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, CodeInvalidRequest, "batches are not accepted"},
		{"empty", ``, CodeParseError, "empty"},
		{"not JSON", `{"jsonrpc":`, CodeParseError, "not valid JSON"},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}", CodeParseError, "UTF-8"},
		{"trailing data", `{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"ping"}`, CodeParseError, "after the JSON-RPC message"},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"ping"}x`, CodeParseError, "after the JSON-RPC message"},
		{"duplicate key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, CodeInvalidRequest, `"name" appears twice`},
		{"duplicate top key", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, CodeInvalidRequest, "appears twice"},
		{"case variant top", `{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}`, CodeInvalidRequest, `"Params" differs from "params" only in case`},
		{"case variant param", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"b"}}`, CodeInvalidRequest, "only in case"},
		{"case duplicate deep", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"path":"/ok","PATH":"/etc"}}}`, CodeInvalidRequest, "appears twice"},
		{"too deep", deep, CodeInvalidRequest, "deeper than 64"},
		// A recursive validator would spend 256 MiB of stack on this
		// (and crash the process at a few million levels).
		{"very deep", `{"a":` + strings.Repeat("[", 500_000), CodeInvalidRequest, "deeper than 64"},
		{"brackets in strings", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` +
			strings.Repeat("[", 100) + `\"` + strings.Repeat("{", 100) + `"}}x`, CodeParseError, "after the JSON-RPC message"},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, CodeInvalidRequest, `"2.0"`},
		{"no version", `{"id":1,"method":"ping"}`, CodeInvalidRequest, `"2.0"`},
		{"params array", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}`, CodeInvalidParams, "must be an object"},
		{"name not string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`, CodeInvalidParams, "must be a string"},
		{"request as notification", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}`, CodeInvalidRequest, "needs an id"},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, CodeInvalidRequest, "string or a number"},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest, "string or a number"},
		{"neither", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, "neither"},
		{"request with result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest, "must not carry"},
		{"not an object", `"ping"`, CodeInvalidRequest, "not a JSON object"},
		{"ref with both targets", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","name":"ok","uri":"secret://x"}}}`, CodeInvalidParams, "must not carry"},
		{"ref of unknown type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}`, CodeInvalidParams, "neither"},
		{"long s fold", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"paſs":"1","pass":"2"}}}`, CodeInvalidRequest, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body))
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Code != tt.code || !strings.Contains(pe.Msg, tt.want) {
				t.Errorf("Parse() = %v, want code %d and %q", err, tt.code, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}`,
		`[{"jsonrpc":"2.0"}]`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"x"}`,
		`{"jsonrpc":"2.0","id":5,"result":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"m\u0065thod":1,"METHOD":2}}}`,
		`{"a":[{"b":{"c":[]}},{"b":"\"}"}],"A ":1}`,
		`{"a":` + strings.Repeat("[", 10_001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Parse's syntax check must agree with the standard library's, on
		// bodies shallow enough to reach it.
		if !tooDeep(body) && json.Valid(body) != sjson.Valid(body) {
			t.Fatalf("json.Valid(%q) = %v, segmentio's Valid disagrees", body, json.Valid(body))
		}
		// The fast key scan must agree with the token walk it replaced.
		if utf8.Valid(body) && json.Valid(body) {
			if (scanKeys(body) == nil) != (checkStructure(body) == nil) {
				t.Fatalf("scanKeys = %v but checkStructure = %v for %q", scanKeys(body), checkStructure(body), body)
			}
			// The member split must agree with the standard decoder.
			var want map[string]json.RawMessage
			got, isObject := objectMembers(body)
			if (json.Unmarshal(body, &want) == nil) != isObject {
				t.Fatalf("objectMembers(%q) object = %v, the decoder disagrees", body, isObject)
			}
			if isObject && scanKeys(body) == nil {
				if len(got) != len(want) {
					t.Fatalf("objectMembers(%q) = %d members, want %d", body, len(got), len(want))
				}
				for _, m := range got {
					if !bytes.Equal(m.value, want[m.key]) {
						t.Fatalf("objectMembers(%q)[%q] = %q, want %q", body, m.key, m.value, want[m.key])
					}
				}
			}
		}
		m, err := Parse(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse() error %v is not a *ParseError", err)
			}
			return
		}
		if m.Method == "" && m.ID == nil {
			t.Fatalf("Parse(%q) accepted a message without method or id", body)
		}
	})
}
