package edge_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// helloed dials the edge's tunnel as connector c1, is accepted, and
// returns the connection and its control stream.
func helloed(t *testing.T, v *env, e *edge.Edge) (*quic.Conn, *quic.Stream) {
	t.Helper()
	tc := v.clientTLS(v.issue(certs.KindConnector, "c1"))
	tc.NextProtos = []string{tunnel.ALPN}
	tc.ServerName = "127.0.0.1"
	ctx := testContext(t)
	conn, err := quic.DialAddr(ctx, e.TunnelAddr().String(), tc, tunnel.QUICSettings{}.WithDefaults(16).Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &tunnel.Hello{Version: tunnel.Version, Name: "c1", Instance: "abuse-instance",
		Resources: []string{"demo"}, Software: "test"}
	if err := tunnel.WriteFrame(ctrl, &tunnel.Message{Type: tunnel.TypeHello, Hello: hello}); err != nil {
		t.Fatal(err)
	}
	ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	var answer tunnel.Message
	if err := tunnel.ReadFrame(ctrl, &answer); err != nil || answer.Type != tunnel.TypeAck {
		t.Fatalf("hello answered %+v, %v; want an ack", answer, err)
	}
	return conn, ctrl
}

// TestTunnelAbuse: a connector that was accepted and then misbehaves on
// its tunnel (a malformed control frame, a message it may not send, more
// streams than the edge allows it) is cut off or held to the limit, and
// the edge stops routing to it.
func TestTunnelAbuse(t *testing.T) {
	v := newEnv(t)
	e := v.startEdge([]edge.Resource{{Name: "demo", Connectors: []string{"c1"}}}, nil)
	closedWithProtocolError := func(t *testing.T, conn *quic.Conn) {
		t.Helper()
		select {
		case <-conn.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the edge kept the tunnel open")
		}
		var appErr *quic.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &appErr) ||
			appErr.ErrorCode != tunnel.CodeProtocol {
			t.Errorf("tunnel closed with %v, want the protocol error code %d", err, tunnel.CodeProtocol)
		}
		waitFor(t, "the edge to drop the tunnel", func() bool { return !hasTunnel(e, "c1") })
	}

	t.Run("malformed control frame", func(t *testing.T) {
		conn, ctrl := helloed(t, v, e)
		// A frame header that promises more than the frame limit.
		ctrl.Write([]byte{0xff, 0xff, 0xff, 0xff, '{'})
		closedWithProtocolError(t, conn)
	})
	t.Run("message a connector may not send", func(t *testing.T) {
		conn, ctrl := helloed(t, v, e)
		ack := &tunnel.Message{Type: tunnel.TypeAck, Ack: &tunnel.Ack{Edge: "spiffe://airlock.local/edge/x"}}
		if err := tunnel.WriteFrame(ctrl, ack); err != nil {
			t.Fatal(err)
		}
		closedWithProtocolError(t, conn)
	})
	t.Run("more streams than the cap", func(t *testing.T) {
		conn, _ := helloed(t, v, e)
		// The control stream is one of the 16 the edge allows a connector.
		opened := 1
		for ; opened < 100; opened++ {
			if _, err := conn.OpenStream(); err != nil {
				var tooMany *quic.StreamLimitReachedError
				if !errors.As(err, &tooMany) {
					t.Fatalf("stream %d: %v, want the stream limit", opened+1, err)
				}
				break
			}
		}
		if opened != tunnel.DefaultEdgeStreams {
			t.Errorf("the connector could open %d streams; the edge allows %d", opened, tunnel.DefaultEdgeStreams)
		}
	})
}
