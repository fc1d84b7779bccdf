package tunnel

import "sync"

// Sizes of a BodyBuffer.
const (
	smallBody = 2 << 10
	largeBody = 32 << 10
)

var (
	smallBodyBufs = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}
	largeBodyBufs = sync.Pool{New: func() any { b := make([]byte, largeBody); return &b }}
)

// BodyBuffer is the read buffer of a body relayed through the tunnel. It
// starts at 2 KiB and grows to 32 KiB once a read fills it: an SSE stream,
// which holds its buffer for as long as it waits for its next event, holds
// little, while a large body is copied in large reads. The zero value is
// ready to use; Release it when the copy is done.
type BodyBuffer struct {
	p *[]byte // from smallBodyBufs or, once grown, largeBodyBufs
}

// Bytes returns the buffer for the next read.
func (b *BodyBuffer) Bytes() []byte {
	if b.p == nil {
		b.p = smallBodyBufs.Get().(*[]byte)
	}
	return *b.p
}

// Filled records that the last read returned n bytes: a small buffer that
// it filled is exchanged for a large one. Call it after the bytes were
// used, since Bytes may change.
func (b *BodyBuffer) Filled(n int) {
	if b.p == nil || len(*b.p) == largeBody || n < len(*b.p) {
		return
	}
	smallBodyBufs.Put(b.p)
	b.p = largeBodyBufs.Get().(*[]byte)
}

// Release returns the buffer to its pool.
func (b *BodyBuffer) Release() {
	switch {
	case b.p == nil:
	case len(*b.p) == largeBody:
		largeBodyBufs.Put(b.p)
	default:
		smallBodyBufs.Put(b.p)
	}
	b.p = nil
}
