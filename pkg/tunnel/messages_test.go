package tunnel

import (
	"bytes"
	"strings"
	"testing"
)

func TestMessageValidate(t *testing.T) {
	hello := validHello()
	ack := &Ack{Edge: "spiffe://airlock.local/edge/edge", Issuer: "https://edge:8443", Keys: Keys{JWKS: []byte(`{"keys":[]}`)}}
	const notOwn = "exactly its own body"
	tests := []struct {
		name    string
		m       Message
		wantErr string // empty means valid
	}{
		{name: "hello", m: Message{Type: TypeHello, Hello: hello}},
		{name: "ack", m: Message{Type: TypeAck, Ack: ack}},
		{name: "refusal", m: Message{Type: TypeRefusal, Refusal: &Refusal{Reason: "no"}}},
		{name: "drain", m: Message{Type: TypeDrain, Drain: &Drain{}}},
		{name: "zero", m: Message{}, wantErr: "unknown control message type"},
		{name: "unknown type", m: Message{Type: "ping", Drain: &Drain{}}, wantErr: `"ping"`},
		{name: "type in another case", m: Message{Type: "Hello", Hello: hello}, wantErr: "unknown"},
		{name: "hello without body", m: Message{Type: TypeHello}, wantErr: notOwn},
		{name: "hello with ack body", m: Message{Type: TypeHello, Ack: ack}, wantErr: notOwn},
		{name: "ack without body", m: Message{Type: TypeAck}, wantErr: notOwn},
		{
			name:    "refusal with drain body",
			m:       Message{Type: TypeRefusal, Drain: &Drain{}},
			wantErr: notOwn,
		},
		{name: "drain without body", m: Message{Type: TypeDrain}, wantErr: notOwn},
		{
			name:    "own body and another",
			m:       Message{Type: TypeAck, Ack: ack, Refusal: &Refusal{Reason: "no"}},
			wantErr: notOwn,
		},
		{
			name: "every body",
			m: Message{
				Type:    TypeDrain,
				Hello:   hello,
				Ack:     ack,
				Refusal: &Refusal{},
				Drain:   &Drain{},
			},
			wantErr: notOwn,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "Message.Validate()", tt.m.Validate(), tt.wantErr)
		})
	}
}

// validHello returns a hello that passes Validate.
func validHello() *Hello {
	return &Hello{
		Version:   Version,
		Name:      "db",
		Instance:  "0123456789abcdef",
		Resources: []string{"files", "wiki"},
	}
}

func TestHelloValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Hello)
		// wantErrs must all appear in the error; none means valid.
		wantErrs []string
	}{
		{name: "valid", modify: func(*Hello) {}},
		{name: "no software is fine", modify: func(h *Hello) { h.Software = "" }},
		{name: "shortest instance", modify: func(h *Hello) { h.Instance = "12345678" }},
		{name: "longest instance", modify: func(h *Hello) { h.Instance = strings.Repeat("i", 64) }},
		{
			name:     "version 0",
			modify:   func(h *Hello) { h.Version = 0 },
			wantErrs: []string{"version 0"},
		},
		{
			name:     "newer version",
			modify:   func(h *Hello) { h.Version = Version + 1 },
			wantErrs: []string{"unsupported tunnel protocol version"},
		},
		{
			name:     "no name",
			modify:   func(h *Hello) { h.Name = "" },
			wantErrs: []string{"names no connector"},
		},
		{
			name:     "short instance",
			modify:   func(h *Hello) { h.Instance = "1234567" },
			wantErrs: []string{"instance"},
		},
		{
			name:     "long instance",
			modify:   func(h *Hello) { h.Instance = strings.Repeat("i", 65) },
			wantErrs: []string{"instance"},
		},
		{
			name:     "no resources",
			modify:   func(h *Hello) { h.Resources = nil },
			wantErrs: []string{"no resources"},
		},
		{
			name:     "resource twice",
			modify:   func(h *Hello) { h.Resources = []string{"files", "wiki", "files"} },
			wantErrs: []string{"twice"},
		},
		{
			name: "everything wrong at once",
			modify: func(h *Hello) {
				*h = Hello{Version: 9, Resources: []string{"a", "a"}}
			},
			wantErrs: []string{"version 9", "names no connector", "instance", "twice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := validHello()
			tt.modify(h)
			err := h.Validate()
			if len(tt.wantErrs) == 0 {
				checkErr(t, "Hello.Validate()", err, "")
			}
			for _, want := range tt.wantErrs {
				checkErr(t, "Hello.Validate()", err, want)
			}
		})
	}
}

func TestHelloValidateKeepsResourceOrder(t *testing.T) {
	h := validHello()
	h.Resources = []string{"wiki", "files"}
	if err := h.Validate(); err != nil {
		t.Fatalf("Hello.Validate() = %v, want nil", err)
	}
	if h.Resources[0] != "wiki" || h.Resources[1] != "files" {
		t.Errorf("Hello.Validate() reordered the resources to %q", h.Resources)
	}
}

func TestStreamHeaderWire(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &StreamHeader{Resource: "files", RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	// The field names are the protocol; a rename would break old peers.
	if got, want := buf.String()[4:], `{"resource":"files","request_id":"r1"}`; got != want {
		t.Errorf("StreamHeader on the wire = %s, want %s", got, want)
	}

	var h StreamHeader
	in := frameOf(`{"resource":"files","request_id":"r1","url":"http://x"}`)
	err := ReadFrame(bytes.NewReader(in), &h)

	if err == nil {
		t.Errorf("ReadFrame() of a stream header naming a URL = nil (read %+v), want an error", h)
	}
}

// checkErr fails t unless err is nil when want is empty, or holds want.
func checkErr(t *testing.T, call string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case want != "" && err == nil:
		t.Errorf("%s = nil, want an error containing %q", call, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s = %v, want an error containing %q", call, err, want)
	}
}
