package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rawFrame returns body behind a 4-byte big-endian length prefix of n.
func rawFrame(n uint32, body string) []byte {
	out := binary.BigEndian.AppendUint32(nil, n)
	return append(out, body...)
}

// frameOf returns body as one well-formed frame.
func frameOf(body string) []byte {
	return rawFrame(uint32(len(body)), body)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   any
		// out is a fresh value of the same type to read into.
		out any
	}{
		{
			name: "hello",
			in: &Message{Type: TypeHello, Hello: &Hello{
				Version:   Version,
				Name:      "db",
				Instance:  "0123456789abcdef",
				Resources: []string{"files", "wiki"},
				Software:  "airlock/dev",
			}},
			out: &Message{},
		},
		{
			name: "ack",
			in:   &Message{Type: TypeAck, Ack: &Ack{Edge: "spiffe://airlock.local/edge/edge", Issuer: "https://e", Keys: Keys{JWKS: []byte(`{"keys":[]}`)}}},
			out:  &Message{},
		},
		{
			name: "refusal",
			in:   &Message{Type: TypeRefusal, Refusal: &Refusal{Reason: "not allowed"}},
			out:  &Message{},
		},
		{name: "drain", in: &Message{Type: TypeDrain, Drain: &Drain{}}, out: &Message{}},
		{
			name: "stream header",
			in:   &StreamHeader{Resource: "files", RequestID: "req-1"},
			out:  &StreamHeader{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tt.in); err != nil {
				t.Fatalf("WriteFrame(%+v) = %v, want nil", tt.in, err)
			}

			// The prefix counts exactly the JSON that follows it.
			wire := buf.Bytes()
			body, _ := json.Marshal(tt.in)
			n := binary.BigEndian.Uint32(wire)
			if int(n) != len(body) || len(wire) != 4+len(body) {
				t.Errorf("frame length prefix = %d for %d bytes of frame, want %d",
					n, len(wire), len(body))
			}

			if err := ReadFrame(&buf, tt.out); err != nil {
				t.Fatalf("ReadFrame() = %v, want nil", err)
			}
			if diff := cmp.Diff(tt.in, tt.out); diff != "" {
				t.Errorf("ReadFrame(WriteFrame(v)) mismatch (-want +got):\n%s", diff)
			}
			if buf.Len() != 0 {
				t.Errorf("ReadFrame() left %d bytes unread, want 0", buf.Len())
			}
		})
	}
}

func TestReadFrameConsecutive(t *testing.T) {
	msgs := []*Message{
		{Type: TypeAck, Ack: &Ack{Edge: "spiffe://airlock.local/edge/a", Issuer: "https://e", Keys: Keys{JWKS: []byte(`{"keys":[]}`)}}},
		{Type: TypeDrain, Drain: &Drain{}},
		{Type: TypeRefusal, Refusal: &Refusal{Reason: "bye"}},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatalf("WriteFrame(%+v) = %v", m, err)
		}
	}
	for i, want := range msgs {
		var got Message
		if err := ReadFrame(&buf, &got); err != nil {
			t.Fatalf("ReadFrame() of frame %d = %v, want nil", i, err)
		}
		if diff := cmp.Diff(want, &got); diff != "" {
			t.Errorf("frame %d mismatch (-want +got):\n%s", i, diff)
		}
	}
	var m Message
	if err := ReadFrame(&buf, &m); !errors.Is(err, io.EOF) {
		t.Errorf("ReadFrame() after the last frame = %v, want io.EOF", err)
	}
}

// refusalOfSize returns a refusal whose JSON encoding is exactly n bytes.
func refusalOfSize(t *testing.T, n int) *Message {
	t.Helper()
	m := &Message{Type: TypeRefusal, Refusal: &Refusal{}}
	empty, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m.Refusal.Reason = strings.Repeat("r", n-len(empty))
	return m
}

func TestWriteFrameSizeLimit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, refusalOfSize(t, MaxFrameSize)); err != nil {
		t.Fatalf("WriteFrame() of exactly MaxFrameSize bytes = %v, want nil", err)
	}
	var m Message
	if err := ReadFrame(&buf, &m); err != nil {
		t.Fatalf("ReadFrame() of exactly MaxFrameSize bytes = %v, want nil", err)
	}

	buf.Reset()
	err := WriteFrame(&buf, refusalOfSize(t, MaxFrameSize+1))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("WriteFrame() of MaxFrameSize+1 bytes = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Errorf("WriteFrame() wrote %d bytes of a refused frame, want none", buf.Len())
	}
}

func TestWriteFrameErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, make(chan int)); err == nil {
		t.Error("WriteFrame(chan) = nil, want an encoding error")
	}
	if buf.Len() != 0 {
		t.Errorf("WriteFrame(chan) wrote %d bytes, want none", buf.Len())
	}

	errBroken := errors.New("broken pipe")
	err := WriteFrame(failingWriter{errBroken}, &StreamHeader{Resource: "files"})
	if !errors.Is(err, errBroken) {
		t.Errorf("WriteFrame() on a failing writer = %v, want it to wrap %v", err, errBroken)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestReadFrameRefuses(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		// wantErr, when set, must be in the error chain.
		wantErr error
	}{
		{name: "no input", input: nil, wantErr: io.EOF},
		{name: "short length", input: []byte{0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "short body", input: rawFrame(20, `{"type":"ack"`), wantErr: io.ErrUnexpectedEOF},
		{name: "length only", input: rawFrame(2, ""), wantErr: io.EOF},
		{name: "empty frame", input: rawFrame(0, ""), wantErr: ErrEmptyFrame},
		{name: "too large", input: rawFrame(MaxFrameSize+1, ""), wantErr: ErrFrameTooLarge},
		{name: "largest length", input: rawFrame(1<<32-1, "{}"), wantErr: ErrFrameTooLarge},
		{name: "not JSON", input: frameOf("hello")},
		{name: "unknown field", input: frameOf(`{"type":"drain","drain":{},"extra":1}`)},
		{name: "unknown nested field", input: frameOf(`{"type":"drain","drain":{"now":true}}`)},
		{name: "wrong field type", input: frameOf(`{"type":"hello","hello":{"version":"1"}}`)},
		{name: "second value", input: frameOf(`{"type":"drain","drain":{}} {}`)},
		{name: "trailing garbage", input: frameOf(`{"type":"drain","drain":{}}x`)},
		{name: "trailing brace", input: frameOf(`{"type":"drain","drain":{}}}`)},
		{name: "trailing bracket", input: frameOf(`{"type":"drain","drain":{}}]`)},
		{name: "array", input: frameOf(`[{"type":"drain","drain":{}}]`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := ReadFrame(bytes.NewReader(tt.input), &m)
			if err == nil {
				t.Fatalf("ReadFrame(%q) = nil (read %+v), want an error", tt.input, m)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFrame(%q) = %v, want %v in the chain", tt.input, err, tt.wantErr)
			}
		})
	}
}

func TestReadFrameTooLargeReadsNoBody(t *testing.T) {
	// A peer announcing a huge frame must not make us wait for, or
	// allocate, its body: the length alone is the protocol error.
	r := bytes.NewReader(append(rawFrame(MaxFrameSize+1, ""), "{}"...))
	var m Message
	if err := ReadFrame(r, &m); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame() = %v, want ErrFrameTooLarge", err)
	}
	if r.Len() != 2 {
		t.Errorf("ReadFrame() consumed the body of a refused frame: %d bytes left, want 2", r.Len())
	}
}

func TestReadFrameAcceptsTrailingWhitespace(t *testing.T) {
	var m Message
	in := frameOf(" {\"type\":\"drain\",\"drain\":{}}\n\t ")
	if err := ReadFrame(bytes.NewReader(in), &m); err != nil {

		t.Fatalf("ReadFrame() = %v, want nil", err)
	}
	if m.Type != TypeDrain || m.Drain == nil {
		t.Errorf("ReadFrame() = %+v, want a drain", m)
	}
}
