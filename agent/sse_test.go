package agent

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEventReader(t *testing.T) {
	type ev struct {
		id    string
		hasID bool
		data  string
	}
	tests := []struct {
		name    string
		stream  string
		want    []ev
		wantErr error
	}{
		{"LF", "data: a\n\ndata: b\n\n", []ev{{data: "a"}, {data: "b"}}, io.EOF},
		{"CRLF", "id: 1\r\ndata: a\r\n\r\n", []ev{{"1", true, "a"}}, io.EOF},
		{"lone CR", "id: 1\rdata: a\r\rdata: b\r\r", []ev{{"1", true, "a"}, {data: "b"}}, io.EOF},
		{"CR then CRLF", "data: a\r\r\ndata: b\n\n", []ev{{data: "a"}, {data: "b"}}, io.EOF},
		{"multi-line data", "data: {\"a\":\ndata: 1}\n\n", []ev{{data: "{\"a\":\n1}"}}, io.EOF},
		{"comments and other fields", ": hi\nevent: message\nretry: 10\ndata:x\n\n",
			[]ev{{data: "x"}}, io.EOF},
		{"id only (priming)", "id: p0\ndata:\n\nid: p1\n\n", []ev{{"p0", true, ""}, {"p1", true, ""}}, io.EOF},
		{"empty id resets", "id:\n\n", []ev{{"", true, ""}}, io.EOF},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []ev{{data: "x"}}, io.EOF},
		{"blank lines only", "\n\n\r\n", nil, io.EOF},
		{"cut inside an event", "data: a\n\ndata: b\n", []ev{{data: "a"}}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newEventReader(strings.NewReader(tt.stream), 1024)
			var got []ev
			var err error
			for {
				var e event
				if e, err = r.next(); err != nil {
					break
				}
				got = append(got, ev{e.id, e.hasID, string(e.data)})
			}
			if !errors.Is(err, tt.wantErr) || len(got) != len(tt.want) {
				t.Fatalf("events %+v, end %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestEventReaderLimits(t *testing.T) {
	long := "data: " + strings.Repeat("x", 100) + "\n\n"
	if _, err := newEventReader(strings.NewReader(long), 50).next(); err == nil ||
		!strings.Contains(err.Error(), "over 50 bytes") {
		t.Errorf("a line over the limit = %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("x", 30)+"\n", 5) + "\n"
	if _, err := newEventReader(strings.NewReader(many), 100).next(); err == nil ||
		!strings.Contains(err.Error(), "event over 100 bytes") {
		t.Errorf("an event over the limit = %v", err)
	}
}

// FuzzEventReader checks that no stream makes the reader panic, loop or
// return data over its limit.
func FuzzEventReader(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "id: 1\rdata: b\r\r", "data: a\r\n\r\n", ":\n\n", "id\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := newEventReader(strings.NewReader(string(stream)), 64)
		for range len(stream) + 1 {
			e, err := r.next()
			if err != nil {
				return
			}
			if len(e.data) > 64 {
				t.Fatalf("event data of %d bytes over the limit of 64", len(e.data))
			}
		}
		t.Fatalf("more events than bytes in %q", stream)
	})
}
