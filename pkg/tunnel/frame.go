package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ALPN is the TLS application protocol of the tunnel.
const ALPN = "airlock/1"

// Version is the tunnel protocol version this build speaks.
const Version = 1

// MaxFrameSize bounds a control frame or stream header, in bytes.
const MaxFrameSize = 64 << 10

// Errors a peer sees when a frame breaks the protocol.
var (
	ErrFrameTooLarge = errors.New("tunnel frame exceeds maximum size")
	ErrEmptyFrame    = errors.New("empty tunnel frame")
)

// Application error codes used to close connections and reset streams.
const (
	// CodeOK closes a connection or stream that ended normally.
	CodeOK = 0
	// CodeRefused closes a connection whose hello the edge refused.
	CodeRefused = 1
	// CodeProtocol closes a connection or stream that broke the protocol.
	CodeProtocol = 2
	// CodeShutdown closes a connection because its side is shutting down.
	CodeShutdown = 3
	// CodeReplaced closes a connection replaced by a newer instance of the
	// same connector.
	CodeReplaced = 4
	// CodeCancelled resets a stream whose request was abandoned.
	CodeCancelled = 5
	// CodeUpstream resets a stream whose upstream failed mid-response.
	CodeUpstream = 6
	// CodeRevoked closes a connection whose certificate was revoked.
	CodeRevoked = 7
	// CodeExpired closes a connection whose certificate has expired.
	CodeExpired = 8
)

// WriteFrame writes v as one JSON frame.
func WriteFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding tunnel frame: %w", err)
	}
	if len(body) > MaxFrameSize {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	if _, err := w.Write(append(buf, body...)); err != nil {
		return fmt.Errorf("writing tunnel frame: %w", err)
	}
	return nil
}

// ReadFrame reads one JSON frame into v. Unknown fields and trailing data
// inside the frame are errors, so both sides agree on what a frame meant.
func ReadFrame(r io.Reader, v any) error {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("reading tunnel frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 {
		return ErrEmptyFrame
	}
	if n > MaxFrameSize {
		return fmt.Errorf("reading tunnel frame of %d bytes: %w", n, ErrFrameTooLarge)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("reading tunnel frame body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding tunnel frame: %w", err)
	}
	// Decoder.More misses a stray '}' or ']' after the value; only a clean
	// end of input proves there is nothing else in the frame.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("decoding tunnel frame: trailing data")
	}
	return nil
}
