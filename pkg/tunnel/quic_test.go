package tunnel

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
)

func TestQUICSettingsWithDefaults(t *testing.T) {
	defaults := func(streams int64) QUICSettings {
		return QUICSettings{
			IdleTimeout:             5 * time.Second,
			KeepAlive:               time.Second,
			HandshakeTimeout:        3 * time.Second,
			StreamReceiveWindow:     1 << 20,
			ConnectionReceiveWindow: 64 << 20,
			MaxIncomingStreams:      streams,
		}
	}
	custom := QUICSettings{
		IdleTimeout:             30 * time.Second,
		KeepAlive:               10 * time.Second,
		HandshakeTimeout:        time.Second,
		StreamReceiveWindow:     2 << 20,
		ConnectionReceiveWindow: 128 << 20,
		MaxIncomingStreams:      100,
	}
	tests := []struct {
		name       string
		in         QUICSettings
		maxStreams int64
		want       QUICSettings
	}{
		{name: "connector zero value", maxStreams: DefaultConnectorStreams, want: defaults(4096)},
		{name: "edge zero value", maxStreams: DefaultEdgeStreams, want: defaults(16)},
		{name: "set fields kept", in: custom, maxStreams: DefaultConnectorStreams, want: custom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults(tt.maxStreams)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("WithDefaults(%d) mismatch (-want +got):\n%s", tt.maxStreams, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("WithDefaults(%d).Validate() = %v, want nil", tt.maxStreams, err)
			}
		})
	}
}

func TestQUICSettingsValidate(t *testing.T) {
	tests := []struct {
		name    string
		s       QUICSettings
		wantErr string // empty means valid
	}{
		{name: "zero value", s: QUICSettings{}},
		{name: "negative idle timeout", s: QUICSettings{IdleTimeout: -1}, wantErr: "negative"},
		{name: "negative keep-alive", s: QUICSettings{KeepAlive: -1}, wantErr: "negative"},
		{name: "negative handshake", s: QUICSettings{HandshakeTimeout: -1}, wantErr: "negative"},
		{
			name:    "keep-alive equal to idle timeout",
			s:       QUICSettings{IdleTimeout: 5 * time.Second, KeepAlive: 5 * time.Second},
			wantErr: "quic.keep_alive 5s must be shorter than quic.idle_timeout 5s",
		},
		{
			name: "keep-alive just below idle timeout",
			s:    QUICSettings{IdleTimeout: 5 * time.Second, KeepAlive: 5*time.Second - 1},
		},
		{
			name:    "connection window below four streams",
			s:       QUICSettings{StreamReceiveWindow: 1 << 20, ConnectionReceiveWindow: 4<<20 - 1},
			wantErr: "quic.connection_receive_window",
		},
		{
			name: "connection window exactly four streams",
			s:    QUICSettings{StreamReceiveWindow: 1 << 20, ConnectionReceiveWindow: 4 << 20},
		},
		{
			name:    "negative incoming streams",
			s:       QUICSettings{MaxIncomingStreams: -1},
			wantErr: "quic.max_incoming_streams",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "QUICSettings.Validate()", tt.s.Validate(), tt.wantErr)
		})
	}
}

func TestQUICSettingsValidateReportsAll(t *testing.T) {
	s := QUICSettings{
		IdleTimeout:             time.Second,
		KeepAlive:               2 * time.Second,
		StreamReceiveWindow:     1 << 20,
		ConnectionReceiveWindow: 1 << 20,
		MaxIncomingStreams:      -5,
	}
	err := s.Validate()
	wants := []string{
		"quic.keep_alive",
		"quic.connection_receive_window",
		"quic.max_incoming_streams",
	}
	for _, want := range wants {
		checkErr(t, "QUICSettings.Validate()", err, want)
	}
}

func TestQUICSettingsConfig(t *testing.T) {
	small := QUICSettings{
		IdleTimeout:             10 * time.Second,
		KeepAlive:               2 * time.Second,
		HandshakeTimeout:        4 * time.Second,
		StreamReceiveWindow:     256 << 10,
		ConnectionReceiveWindow: 8 << 20,
		MaxIncomingStreams:      7,
	}
	tests := []struct {
		name string
		s    QUICSettings
		want *quic.Config
	}{
		{
			name: "defaults start below the maximum windows",
			s:    QUICSettings{}.WithDefaults(DefaultConnectorStreams),
			want: &quic.Config{
				HandshakeIdleTimeout:           3 * time.Second,
				MaxIdleTimeout:                 5 * time.Second,
				KeepAlivePeriod:                time.Second,
				InitialStreamReceiveWindow:     512 << 10,
				MaxStreamReceiveWindow:         1 << 20,
				InitialConnectionReceiveWindow: 16 << 20,
				MaxConnectionReceiveWindow:     64 << 20,
				MaxIncomingStreams:             4096,
				MaxIncomingUniStreams:          -1,
			},
		},
		{
			name: "small windows start at their maximum",
			s:    small,
			want: &quic.Config{
				HandshakeIdleTimeout:           4 * time.Second,
				MaxIdleTimeout:                 10 * time.Second,
				KeepAlivePeriod:                2 * time.Second,
				InitialStreamReceiveWindow:     256 << 10,
				MaxStreamReceiveWindow:         256 << 10,
				InitialConnectionReceiveWindow: 8 << 20,
				MaxConnectionReceiveWindow:     8 << 20,
				MaxIncomingStreams:             7,
				MaxIncomingUniStreams:          -1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The zero value of every other field, Allow0RTT among them, is
			// part of the contract: replayed early data could repeat a
			// request, and neither side opens unidirectional streams.
			if diff := cmp.Diff(tt.want, tt.s.Config()); diff != "" {
				t.Errorf("Config() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
