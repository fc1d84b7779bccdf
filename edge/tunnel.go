package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// helloTimeout bounds how long a connector may take to say hello after its
// handshake.
const helloTimeout = 10 * time.Second

func (e *Edge) tunnelTLS() *tls.Config {
	return e.withCurrentRoots(&tls.Config{
		MinVersion:       tls.VersionTLS13,
		GetCertificate:   e.serving.get,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		NextProtos:       []string{tunnel.ALPN},
		VerifyConnection: e.refuseRevoked,
		Time:             e.now,
	})
}

func (e *Edge) acceptConnectors(ctx context.Context) {
	for {
		conn, err := e.quicLn.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, quic.ErrServerClosed) {
				e.logger.Error("accepting tunnels failed", logkey.Error, err)
			}
			return
		}
		go e.serveConnector(ctx, conn)
	}
}

// serveConnector checks a connector's identity and hello, registers its
// tunnel and keeps it until the connection ends.
func (e *Edge) serveConnector(ctx context.Context, conn *quic.Conn) {
	logger := e.logger.With(logkey.RemoteAddr, conn.RemoteAddr().String())
	ctrl, hello, err := e.readHello(ctx, conn)
	if err != nil {
		logger.Warn("tunnel handshake failed", logkey.Error, err)
		conn.CloseWithError(tunnel.CodeProtocol, "no valid hello")
		return
	}
	l, err := e.admit(conn, hello)
	if err != nil {
		e.refuse(conn, ctrl, err, logger)
		return
	}
	logger = logger.With(logkey.ConnectorName, l.connector, logkey.Instance, l.instance)
	l.ctrl = ctrl
	gen := e.keysGen.Load()
	jwks, err := e.keys.JWKS()
	if err == nil {
		ack := &tunnel.Ack{Edge: e.id.String(), Issuer: e.issuer, Keys: tunnel.Keys{JWKS: jwks}}
		err = l.send(&tunnel.Message{Type: tunnel.TypeAck, Ack: ack})
	}
	if err != nil {
		logger.Warn("sending ack failed", logkey.Error, err)
		conn.CloseWithError(tunnel.CodeProtocol, "ack failed")
		return
	}
	for _, old := range e.registry.add(l) {
		old.conn.CloseWithError(tunnel.CodeReplaced, "replaced by a newer instance of the connector")
		logger.Info("stale tunnel replaced", "old_instance", old.instance)
	}
	// A rotation between the ack and the registration reached every
	// tunnel but this one.
	if e.keysGen.Load() != gen {
		e.sendKeys(l)
	}
	logger.Info("connector connected", logkey.Resources, l.resources, "software", l.software)
	e.seen.touch(l.identity.String(), time.Now())

	// A tunnel lives no longer than the certificate that opened it. The
	// connector renews early and replaces its tunnels long before; a
	// tunnel still here shortly before expiry takes no new requests, so
	// that the close cuts as few as possible. Both by the edge's clock.
	life := l.notAfter.Sub(issuedAt(l.leaf))
	left := l.notAfter.Sub(e.now())
	drain := time.AfterFunc(left-min(life/10, time.Minute), func() {
		l.draining.Store(true)
	})
	defer drain.Stop()
	expire := time.AfterFunc(left, func() {
		logger.Info("tunnel certificate expired, closing tunnel")
		l.conn.CloseWithError(tunnel.CodeExpired, "certificate expired")
	})
	defer expire.Stop()

	go e.readControl(ctrl, l, logger)
	<-conn.Context().Done()
	e.registry.remove(l)
	e.seen.touch(l.identity.String(), time.Now())
	logger.Info("connector disconnected", logkey.Error, context.Cause(conn.Context()))
}

func (e *Edge) readHello(ctx context.Context, conn *quic.Conn) (*quic.Stream, *tunnel.Hello, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for control stream: %w", err)
	}
	ctrl.SetReadDeadline(time.Now().Add(helloTimeout))
	var m tunnel.Message
	if err := tunnel.ReadFrame(ctrl, &m); err != nil {
		return nil, nil, fmt.Errorf("reading hello: %w", err)
	}
	ctrl.SetReadDeadline(time.Time{})
	if err := m.Validate(); err != nil {
		return nil, nil, fmt.Errorf("reading hello: %w", err)
	}
	if m.Type != tunnel.TypeHello {
		return nil, nil, fmt.Errorf("first control message is %q, want hello", m.Type)
	}
	return ctrl, m.Hello, nil
}

// refusalError is a reason to refuse a hello, with a short class for
// metrics.
type refusalError struct {
	class  string
	reason string
}

func (r *refusalError) Error() string { return r.reason }

// admit decides whether the connector behind conn may serve what its
// hello announces.
func (e *Edge) admit(conn *quic.Conn, h *tunnel.Hello) (*link, error) {
	id, leaf, err := certs.PeerIdentity(conn.ConnectionState().TLS, e.ca.TrustDomain(), certs.KindConnector)
	if err != nil {
		return nil, &refusalError{"identity", err.Error()}
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		return nil, &refusalError{"revoked", revokedMessage(id, rev)}
	}
	if err := h.Validate(); err != nil {
		return nil, &refusalError{"hello", err.Error()}
	}
	if h.Name != id.Name {
		return nil, &refusalError{"name", fmt.Sprintf("hello names connector %q but the certificate is %s", h.Name, id)}
	}
	var bad []string
	for _, r := range h.Resources {
		res, ok := e.resources[r]
		if !ok || !slices.Contains(res.Connectors, id.Name) {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		return nil, &refusalError{"resource", fmt.Sprintf("connector %s may not serve %s", id.Name, strings.Join(bad, ", "))}
	}
	l := &link{
		conn:      conn,
		connector: id.Name,
		instance:  h.Instance,
		resources: h.Resources,
		remote:    conn.RemoteAddr().String(),
		software:  h.Software,
		heartbeat: time.Duration(h.HeartbeatMillis) * time.Millisecond,
		since:     time.Now(),
		notAfter:  leaf.NotAfter,
		identity:  id,
		leaf:      leaf,
	}
	l.lastHeard.Store(time.Now().UnixNano())
	return l, nil
}

func (e *Edge) refuse(conn *quic.Conn, ctrl *quic.Stream, err error, logger *slog.Logger) {
	class := "other"
	var r *refusalError
	if errors.As(err, &r) {
		class = r.class
	}
	e.metrics.refusals.WithLabelValues(class).Inc()
	logger.Warn("connector refused", logkey.Reason, err.Error())
	msg := &tunnel.Message{Type: tunnel.TypeRefusal, Refusal: &tunnel.Refusal{Reason: err.Error()}}
	if werr := tunnel.WriteFrame(ctrl, msg); werr == nil {
		ctrl.Close()
	}
	// Give the refusal a moment to arrive before the close does.
	time.AfterFunc(100*time.Millisecond, func() {
		conn.CloseWithError(tunnel.CodeRefused, "connector refused")
	})
}

// readControl handles what a connector sends after its hello: heartbeats,
// drain, or the end of the stream.
// A connector that announced a heartbeat interval and then stays silent
// for tunnel.SilenceLimit of it is cut off: a silent partition.
func (e *Edge) readControl(ctrl *quic.Stream, l *link, logger *slog.Logger) {
	for {
		if l.heartbeat > 0 {
			ctrl.SetReadDeadline(time.Now().Add(tunnel.SilenceLimit(l.heartbeat)))
		}
		var m tunnel.Message
		err := tunnel.ReadFrame(ctrl, &m)
		if err == nil {
			l.lastHeard.Store(time.Now().UnixNano())
		}
		if err != nil {
			var timeout interface{ Timeout() bool }
			if errors.As(err, &timeout) && timeout.Timeout() && l.conn.Context().Err() == nil {
				silence := tunnel.SilenceLimit(l.heartbeat)
				logger.Warn("connector silent, closing tunnel", logkey.Duration, silence)
				l.conn.CloseWithError(tunnel.CodeProtocol,
					fmt.Sprintf("no heartbeat for %s", silence))
				return
			}
			if l.conn.Context().Err() == nil {
				logger.Warn("control stream broken, closing tunnel", logkey.Error, err)
				l.conn.CloseWithError(tunnel.CodeProtocol, "control stream broken")
			}
			return
		}
		if err := m.Validate(); err == nil && m.Type == tunnel.TypeHeartbeat {
			continue
		}
		if err := m.Validate(); err != nil || m.Type != tunnel.TypeDrain {
			logger.Warn("unexpected control message, closing tunnel", "type", m.Type)
			l.conn.CloseWithError(tunnel.CodeProtocol, "unexpected control message")
			return
		}
		l.draining.Store(true)
		logger.Info("connector draining", logkey.InFlight, l.inFlight.Load())
	}
}

// keysChanged runs after a signing key was added or removed: verified
// tokens are checked again, and every connector gets the new key set.
// Assertions signed with a new key may overtake the update on their own
// streams; a connector that meets an unknown key waits a moment for the
// update before it refuses.
func (e *Edge) keysChanged() {
	e.keysGen.Add(1)
	e.tokens.clear()
	for _, l := range e.registry.snapshot() {
		e.sendKeys(l)
	}
}

// sendKeys sends the current key set to one tunnel.
func (e *Edge) sendKeys(l *link) {
	jwks, err := e.keys.JWKS()
	if err != nil {
		e.logger.Error("encoding signing keys failed", logkey.Error, err)
		return
	}
	msg := &tunnel.Message{Type: tunnel.TypeKeys, Keys: &tunnel.Keys{JWKS: jwks}}
	if err := l.send(msg); err != nil {
		e.logger.Warn("sending signing keys to connector failed",
			logkey.ConnectorName, l.connector, logkey.Error, err)
	}
}
