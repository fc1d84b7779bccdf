package connector

import (
	"errors"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantRaw   string
		wantKind  string
		wantToken string
	}{
		{
			name:      "request with a progress token, compacted",
			body:      "{\n  \"jsonrpc\": \"2.0\", \"id\": 7,\n  \"method\": \"tools/call\",\n  \"params\": {\"_meta\": {\"progressToken\": \"p1\"}, \"name\": \"a b\"}\n}",
			wantRaw:   `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":"p1"},"name":"a b"}}`,
			wantKind:  "request",
			wantToken: "sp1",
		},
		{
			name:      "progress notification",
			body:      `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}`,
			wantRaw:   `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}`,
			wantKind:  "notification",
			wantToken: "n3",
		},
		{
			name:     "error response",
			body:     `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}`,
			wantRaw:  `{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}`,
			wantKind: "response",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.body))
			if err != nil {
				t.Fatalf("parseMessage() = %v", err)
			}
			if string(m.raw) != tt.wantRaw {
				t.Errorf("raw = %s, want %s", m.raw, tt.wantRaw)
			}
			kind := map[bool]string{true: "request"}[m.isRequest()] +
				map[bool]string{true: "notification"}[m.isNotification()] +
				map[bool]string{true: "response"}[m.isResponse()]
			if kind != tt.wantKind {
				t.Errorf("kind = %q, want %q", kind, tt.wantKind)
			}
			if got := m.progressToken(); got != tt.wantToken {
				t.Errorf("progressToken() = %q, want %q", got, tt.wantToken)
			}
		})
	}
}

func TestParseMessageRefuses(t *testing.T) {
	for _, body := range []string{
		`not json`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"1.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":1}`,
		`{"jsonrpc":"2.0"}`,
	} {
		if m, err := parseMessage([]byte(body)); err == nil {
			t.Errorf("parseMessage(%s) = %+v, want an error", body, m)
		}
	}
}

func TestIDKey(t *testing.T) {
	same := []struct{ a, b string }{
		{`"a\u00e9"`, `"aé"`},
		{`-0`, `0`},
	}
	for _, tt := range same {
		if ka, kb := idKey([]byte(tt.a)), idKey([]byte(tt.b)); ka != kb || ka == "" {
			t.Errorf("idKey(%s) = %q, idKey(%s) = %q; want equal keys", tt.a, ka, tt.b, kb)
		}
	}
	distinct := []struct{ a, b string }{
		{`1`, `"1"`},
		// Beyond 2^53 a float64 would give both the same key.
		{`9007199254740993`, `9007199254740992`},
		{`-9223372036854775809`, `-9223372036854775808`},
		// Spelled differently: kept apart rather than guessed equal.
		{`1`, `1.0`},
	}
	for _, tt := range distinct {
		if ka, kb := idKey([]byte(tt.a)), idKey([]byte(tt.b)); ka == kb {
			t.Errorf("idKey(%s) = idKey(%s) = %q, want distinct keys", tt.a, tt.b, ka)
		}
	}
	for _, id := range []string{`null`, `{}`, `[1]`, `true`} {
		if k := idKey([]byte(id)); k != "" {
			t.Errorf("idKey(%s) = %q, want none", id, k)
		}
	}
}

func TestParseMessageErrorKinds(t *testing.T) {
	tests := []struct {
		body    string
		notJSON bool
	}{
		{`not json`, true},
		{`{"jsonrpc":"2.0",`, true},
		{`{"a":1}`, false},
		{`{"jsonrpc":"1.0","id":1,"method":"ping"}`, false},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, false},
	}
	for _, tt := range tests {
		_, err := parseMessage([]byte(tt.body))
		if err == nil || errors.Is(err, errNotJSON) != tt.notJSON {
			t.Errorf("parseMessage(%s) = %v, want an error that is errNotJSON: %v",
				tt.body, err, tt.notJSON)
		}
	}
}
