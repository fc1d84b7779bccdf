package tunnel

import (
	"errors"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// QUICSettings are the QUIC transport settings that matter to operators.
// The zero value of a field means its default.
type QUICSettings struct {
	// IdleTimeout closes a connection that has heard nothing from its peer
	// for this long; quic-go never goes below 5s. Default 5s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// KeepAlive sends a ping this often, so that a silent peer is noticed
	// within IdleTimeout. Default 1s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// HandshakeTimeout bounds the QUIC and TLS handshake. Default 3s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// StreamReceiveWindow is the most a single stream may have in flight
	// towards this side, in bytes. Default 1 MiB.
	StreamReceiveWindow uint64 `yaml:"stream_receive_window"`
	// ConnectionReceiveWindow is the most all streams of a connection may
	// have in flight towards this side, in bytes. Keep it far above
	// StreamReceiveWindow times the number of streams that may stall, so
	// one slow reader never stops the others. Default 64 MiB.
	ConnectionReceiveWindow uint64 `yaml:"connection_receive_window"`
	// MaxIncomingStreams is how many streams the peer may have open at
	// once. Every open SSE stream holds one. Default 4096 on a connector
	// (the edge opens a stream per request), 16 on the edge.
	MaxIncomingStreams int64 `yaml:"max_incoming_streams"`
}

// Defaults of [QUICSettings].
const (
	DefaultIdleTimeout             = 5 * time.Second
	DefaultKeepAlive               = time.Second
	DefaultHandshakeTimeout        = 3 * time.Second
	DefaultStreamReceiveWindow     = 1 << 20
	DefaultConnectionReceiveWindow = 64 << 20
	DefaultConnectorStreams        = 4096
	DefaultEdgeStreams             = 16
)

// WithDefaults returns s with every zero field set to its default;
// maxStreams is the default of MaxIncomingStreams for this side.
func (s QUICSettings) WithDefaults(maxStreams int64) QUICSettings {
	if s.IdleTimeout == 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = DefaultKeepAlive
	}
	if s.HandshakeTimeout == 0 {
		s.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if s.StreamReceiveWindow == 0 {
		s.StreamReceiveWindow = DefaultStreamReceiveWindow
	}
	if s.ConnectionReceiveWindow == 0 {
		s.ConnectionReceiveWindow = DefaultConnectionReceiveWindow
	}
	if s.MaxIncomingStreams == 0 {
		s.MaxIncomingStreams = maxStreams
	}
	return s
}

// Validate reports every problem at once.
func (s QUICSettings) Validate() error {
	var errs []error
	if s.IdleTimeout < 0 || s.KeepAlive < 0 || s.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("quic: durations must not be negative"))
	}
	if s.KeepAlive > 0 && s.IdleTimeout > 0 && s.KeepAlive >= s.IdleTimeout {
		errs = append(errs, fmt.Errorf("quic.keep_alive %s must be shorter than quic.idle_timeout %s", s.KeepAlive, s.IdleTimeout))
	}
	if s.StreamReceiveWindow > 0 && s.ConnectionReceiveWindow > 0 && s.ConnectionReceiveWindow < 4*s.StreamReceiveWindow {
		errs = append(errs, fmt.Errorf("quic.connection_receive_window %d must be at least 4 times quic.stream_receive_window %d", s.ConnectionReceiveWindow, s.StreamReceiveWindow))
	}
	if s.MaxIncomingStreams < 0 {
		errs = append(errs, errors.New("quic.max_incoming_streams must not be negative"))
	}
	return errors.Join(errs...)
}

// Config returns the quic-go configuration for s, which must have had its
// defaults filled. 0-RTT stays off: replayed early data could repeat a
// request.
func (s QUICSettings) Config() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           s.HandshakeTimeout,
		MaxIdleTimeout:                 s.IdleTimeout,
		KeepAlivePeriod:                s.KeepAlive,
		InitialStreamReceiveWindow:     min(s.StreamReceiveWindow, 512<<10),
		MaxStreamReceiveWindow:         s.StreamReceiveWindow,
		InitialConnectionReceiveWindow: min(s.ConnectionReceiveWindow, 16<<20),
		MaxConnectionReceiveWindow:     s.ConnectionReceiveWindow,
		MaxIncomingStreams:             s.MaxIncomingStreams,
		MaxIncomingUniStreams:          -1,
		Allow0RTT:                      false,
	}
}
