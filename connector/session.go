package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// helloTimeout bounds the wait for the edge's answer to a hello.
const helloTimeout = 10 * time.Second

// RefusedError is returned when an edge refuses the connector's hello.
type RefusedError struct {
	Edge   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("edge %s refused connector: %s", e.Edge, e.Reason)
}

// session is one QUIC connection to an edge.
type session struct {
	c        *Connector
	conn     *quic.Conn
	addr     string
	logger   *slog.Logger
	acked    atomic.Bool
	inFlight atomic.Int64

	// done is closed when the connection has ended; err says why.
	done chan struct{}
	err  error

	// ctrlMu serializes writes on the control stream.
	ctrlMu sync.Mutex
	ctrl   *quic.Stream

	// keys verify the edge's identity assertions; set by the ack.
	keys *edgeKeys
}

// start says hello and waits for the edge's ack.
func (s *session) start(ctx context.Context) error {
	if err := s.hello(ctx); err != nil {
		s.conn.CloseWithError(tunnel.CodeProtocol, "hello failed")
		return err
	}
	s.acked.Store(true)
	s.logger.Info("tunnel up", logkey.RemoteAddr, s.conn.RemoteAddr().String())
	if s.c.draining.Load() {
		s.sendDrain()
	}
	go s.readControl()
	go s.heartbeat()
	return nil
}

// heartbeat sends a heartbeat on the control stream every
// [tunnel.HeartbeatInterval] until the connection ends, so that an edge
// that lost its state answers with a stateless reset at once.
func (s *session) heartbeat() {
	tick := time.NewTicker(tunnel.HeartbeatInterval(s.c.cfg.QUIC.KeepAlive))
	defer tick.Stop()
	msg := &tunnel.Message{Type: tunnel.TypeHeartbeat, Heartbeat: &tunnel.Heartbeat{Pad: tunnel.HeartbeatPad}}
	for {
		select {
		case <-s.conn.Context().Done():
			return
		case <-tick.C:
		}
		if err := s.writeControl(msg); err != nil {
			return
		}
	}
}

// acceptStreams relays request streams until the connection ends.
func (s *session) acceptStreams() error {
	for {
		str, err := s.conn.AcceptStream(s.conn.Context())
		if err != nil {
			return fmt.Errorf("tunnel to %s lost: %w", s.addr, context.Cause(s.conn.Context()))
		}
		s.c.inFlight.Add(1)
		s.inFlight.Add(1)
		go func() {
			defer s.c.inFlight.Add(-1)
			defer s.inFlight.Add(-1)
			s.c.relay(str, s.keys, s.logger)
		}()
	}
}

// retireSettle is how long a retired tunnel stays open at least after its
// drain: streams the edge opened before the drain reached it may still be
// on their way.
const retireSettle = 250 * time.Millisecond

// retire ends a tunnel that a newer one replaces: the edge sends it no
// new streams, and it closes once its requests are done (but not before
// retireSettle) or the drain grace period is over.
func (s *session) retire() {
	s.sendDrain()
	start := time.Now()
	deadline := start.Add(s.c.cfg.DrainGrace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for (s.inFlight.Load() > 0 || time.Since(start) < retireSettle) && time.Now().Before(deadline) {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
	}
	s.logger.Info("tunnel retired after certificate renewal", logkey.InFlight, s.inFlight.Load())
	s.conn.CloseWithError(tunnel.CodeReplaced, "replaced by a tunnel with a renewed certificate")
}

func (s *session) hello(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	ctrl, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("opening control stream to %s: %w", s.addr, err)
	}
	s.ctrl = ctrl
	names := make([]string, 0, len(s.c.upstream))
	for name := range s.c.upstream {
		names = append(names, name)
	}
	sort.Strings(names)
	hello := &tunnel.Hello{
		Version:         tunnel.Version,
		Name:            s.c.cfg.Name,
		Instance:        s.c.instance,
		Resources:       names,
		Software:        Software,
		HeartbeatMillis: tunnel.HeartbeatInterval(s.c.cfg.QUIC.KeepAlive).Milliseconds(),
	}
	if err := s.writeControl(&tunnel.Message{Type: tunnel.TypeHello, Hello: hello}); err != nil {
		return err
	}

	ctrl.SetReadDeadline(time.Now().Add(helloTimeout))
	var answer tunnel.Message
	if err := tunnel.ReadFrame(ctrl, &answer); err != nil {
		return fmt.Errorf("reading answer to hello from %s: %w", s.addr, err)
	}
	ctrl.SetReadDeadline(time.Time{})
	if err := answer.Validate(); err != nil {
		return fmt.Errorf("reading answer to hello from %s: %w", s.addr, err)
	}
	switch answer.Type {
	case tunnel.TypeAck:
		keys, err := newEdgeKeys(answer.Ack.Issuer, answer.Ack.Keys.JWKS)
		if err != nil {
			return fmt.Errorf("reading ack from %s: %w", s.addr, err)
		}
		s.keys = keys
		return nil
	case tunnel.TypeRefusal:
		return &RefusedError{Edge: s.addr, Reason: answer.Refusal.Reason}
	default:
		return fmt.Errorf("edge %s answered hello with %q", s.addr, answer.Type)
	}
}

func (s *session) writeControl(m *tunnel.Message) error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	return tunnel.WriteFrame(s.ctrl, m)
}

func (s *session) sendDrain() {
	if !s.acked.Load() {
		return
	}
	err := s.writeControl(&tunnel.Message{Type: tunnel.TypeDrain, Drain: &tunnel.Drain{}})
	if err != nil {
		s.logger.Warn("sending drain failed", logkey.Error, err)
	}
}

// readControl reads what the edge sends on the control stream: updates
// of its signing keys. Anything else closes the tunnel as a protocol
// error.
func (s *session) readControl() {
	for {
		var m tunnel.Message
		err := tunnel.ReadFrame(s.ctrl, &m)
		if s.conn.Context().Err() != nil {
			return
		}
		if err == nil {
			err = m.Validate()
		}
		if err == nil && m.Type == tunnel.TypeKeys {
			if err = s.keys.set(m.Keys.JWKS); err == nil {
				s.logger.Info("edge signing keys updated")
				continue
			}
		}
		if err == nil {
			err = errors.New("unexpected control message " + m.Type)
		}
		s.logger.Warn("control stream broken, closing tunnel", logkey.Error, err)
		s.conn.CloseWithError(tunnel.CodeProtocol, "control stream broken")
		return
	}
}
