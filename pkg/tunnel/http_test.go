package tunnel

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCopyEndToEnd(t *testing.T) {
	tests := []struct {
		name string
		src  http.Header
		want http.Header
	}{
		{
			name: "end-to-end headers pass",
			src: http.Header{
				"Content-Type":   {"application/json"},
				"Mcp-Session-Id": {"s1"},
				"Accept":         {"application/json", "text/event-stream"},
			},
			want: http.Header{
				"Content-Type":   {"application/json"},
				"Mcp-Session-Id": {"s1"},
				"Accept":         {"application/json", "text/event-stream"},
			},
		},
		{
			name: "hop-by-hop headers stay behind",
			src: http.Header{
				"Connection":          {"keep-alive"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Authenticate":  {"Basic"},
				"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
				"Proxy-Connection":    {"keep-alive"},
				"Te":                  {"trailers"},
				"Trailer":             {"X-Checksum"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Content-Length":      {"12"},
			},
			want: http.Header{"Content-Length": {"12"}},
		},
		{
			name: "headers named by Connection stay behind",
			src: http.Header{
				"Connection":   {"X-Hop, x-other-hop ,", "X-Third"},
				"X-Hop":        {"1"},
				"X-Other-Hop":  {"2"},
				"X-Third":      {"3"},
				"X-End-To-End": {"4"},
			},
			want: http.Header{"X-End-To-End": {"4"}},
		},
		{
			name: "empty",
			src:  http.Header{},
			want: http.Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := http.Header{}
			CopyEndToEnd(dst, tt.src)
			if diff := cmp.Diff(tt.want, dst); diff != "" {
				t.Errorf("CopyEndToEnd() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCopyEndToEndOwnsValues(t *testing.T) {
	src := http.Header{"X-A": {"1", "2"}}
	dst := http.Header{"X-A": {"old"}, "X-Kept": {"k"}}
	CopyEndToEnd(dst, src)

	want := http.Header{"X-A": {"1", "2"}, "X-Kept": {"k"}}
	if diff := cmp.Diff(want, dst); diff != "" {
		t.Fatalf("CopyEndToEnd() mismatch (-want +got):\n%s", diff)
	}

	// Changing either header afterwards must not show in the other.
	src["X-A"][0] = "changed"
	dst.Add("X-A", "3")
	if got := src.Values("X-A"); !cmp.Equal(got, []string{"changed", "2"}) {
		t.Errorf("src X-A = %q after dst changed, want [changed 2]", got)
	}
	if got := dst.Values("X-A"); !cmp.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("dst X-A = %q after src changed, want [1 2 3]", got)
	}
}

func TestBodyBufferGrowsWhenFilled(t *testing.T) {
	var b BodyBuffer
	if n := len(b.Bytes()); n != smallBody {
		t.Fatalf("first buffer is %d bytes, want %d", n, smallBody)
	}
	b.Filled(smallBody - 1)
	if n := len(b.Bytes()); n != smallBody {
		t.Fatalf("after a partial read the buffer is %d bytes, want %d", n, smallBody)
	}
	b.Filled(smallBody)
	if n := len(b.Bytes()); n != largeBody {
		t.Fatalf("after a full read the buffer is %d bytes, want %d", n, largeBody)
	}
	b.Filled(1)
	if n := len(b.Bytes()); n != largeBody {
		t.Fatalf("a large buffer shrank to %d bytes", n)
	}
	b.Release()
	if n := len(b.Bytes()); n != smallBody {
		t.Fatalf("after Release the buffer is %d bytes, want a small one again", n)
	}
	b.Release()
}
