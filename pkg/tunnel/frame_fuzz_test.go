package tunnel

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzReadFrame feeds arbitrary bytes to ReadFrame, as a hostile peer
// would. It must never panic, and whatever it accepts must survive
// WriteFrame and ReadFrame unchanged, so both sides agree on what a frame
// meant. The corpus is in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	seeds := []string{
		`{"type":"hello","hello":{"version":1,"name":"db","instance":"0123456789","resources":["files"]}}`,
		`{"type":"ack","ack":{"edge":"spiffe://airlock.local/edge/edge"}}`,
		`{"type":"refusal","refusal":{"reason":"no"}}`,
		`{"type":"drain","drain":{}}`,
		`{"resource":"files","request_id":"r1"}`,
		`{"type":"drain","drain":{}}}`,
		`null`,
	}
	for _, s := range seeds {
		f.Add(frameOf(s))
	}
	f.Add(rawFrame(MaxFrameSize+1, "{}"))
	f.Add(rawFrame(0, ""))
	f.Add([]byte{0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := ReadFrame(bytes.NewReader(data), &m); err == nil {
			_ = m.Validate()
			if m.Hello != nil {
				_ = m.Hello.Validate()
			}
			checkRoundTrip(t, &m, &Message{})
		}
		var h StreamHeader
		if err := ReadFrame(bytes.NewReader(data), &h); err == nil {
			checkRoundTrip(t, &h, &StreamHeader{})
		}
	})
}

// checkRoundTrip writes v and reads it back into fresh, which must then
// equal v.
func checkRoundTrip(t *testing.T, v, fresh any) {
	t.Helper()
	var buf bytes.Buffer
	err := WriteFrame(&buf, v)
	if errors.Is(err, ErrFrameTooLarge) {
		// encoding/json escapes '<', '>', '&' and invalid UTF-8 as six-byte \u escapes,
		// so a frame near MaxFrameSize may grow past it when written back.
		return
	}
	if err != nil {
		t.Fatalf("WriteFrame(%+v) of an accepted frame = %v", v, err)
	}
	if err := ReadFrame(&buf, fresh); err != nil {
		t.Fatalf("ReadFrame(WriteFrame(%+v)) = %v", v, err)
	}
	if diff := cmp.Diff(v, fresh); diff != "" {
		t.Fatalf("accepted frame changed in a round trip (-first +second):\n%s", diff)
	}
}
