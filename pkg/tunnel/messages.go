package tunnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Control message types.
const (
	TypeHello     = "hello"
	TypeAck       = "ack"
	TypeRefusal   = "refusal"
	TypeDrain     = "drain"
	TypeHeartbeat = "heartbeat"
	TypeKeys      = "keys"
)

// Message is one control message; Type says which one field is set.
type Message struct {
	Type    string   `json:"type"`
	Hello   *Hello   `json:"hello,omitempty"`
	Ack     *Ack     `json:"ack,omitempty"`
	Refusal *Refusal `json:"refusal,omitempty"`
	Drain   *Drain   `json:"drain,omitempty"`
	// Heartbeat is sent by the connector; the edge ignores it.
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// Keys is sent by the edge when its signing keys change.
	Keys *Keys `json:"keys,omitempty"`
}

// Validate checks that exactly the field named by Type is set.
func (m *Message) Validate() error {
	set := 0
	for _, present := range []bool{m.Hello != nil, m.Ack != nil, m.Refusal != nil, m.Drain != nil, m.Heartbeat != nil, m.Keys != nil} {
		if present {
			set++
		}
	}
	ok := set == 1
	switch m.Type {
	case TypeHello:
		ok = ok && m.Hello != nil
	case TypeAck:
		ok = ok && m.Ack != nil && m.Ack.Issuer != "" && len(m.Ack.Keys.JWKS) > 0
	case TypeRefusal:
		ok = ok && m.Refusal != nil
	case TypeDrain:
		ok = ok && m.Drain != nil
	case TypeHeartbeat:
		ok = ok && m.Heartbeat != nil
	case TypeKeys:
		ok = ok && m.Keys != nil && len(m.Keys.JWKS) > 0
	default:
		return fmt.Errorf("unknown control message type %q", m.Type)
	}
	if !ok {
		return fmt.Errorf("control message %q must carry exactly its own body", m.Type)
	}
	return nil
}

// Hello is the first message of a connector on its control stream.
type Hello struct {
	// Version is the tunnel protocol version the connector speaks.
	Version int `json:"version"`
	// Name is the connector's name; it must match its certificate.
	Name string `json:"name"`
	// Instance is random per connector process. The edge closes links of
	// an older instance of the same connector when a new one says hello,
	// so a restarted connector never shares traffic with its dead self.
	Instance string `json:"instance"`
	// Resources are the names of the resources this connector serves.
	Resources []string `json:"resources"`
	// Software names the connector build, for operators.
	Software string `json:"software,omitempty"`
	// HeartbeatMillis is how often the connector sends heartbeats. The
	// edge closes a tunnel that stays silent for [SilenceLimit] of it:
	// a partitioned connector is dropped in seconds, not after QUIC's
	// idle timeout (which quic-go keeps at 5 s or more). Zero (an older
	// connector) leaves it to the idle timeout.
	HeartbeatMillis int64 `json:"heartbeat_ms,omitempty"`
}

// Validate reports every problem with the hello at once.
func (h *Hello) Validate() error {
	var errs []error
	if h.Version != Version {
		errs = append(errs, fmt.Errorf("unsupported tunnel protocol version %d (edge speaks %d)", h.Version, Version))
	}
	if h.Name == "" {
		errs = append(errs, errors.New("hello names no connector"))
	}
	if len(h.Instance) < 8 || len(h.Instance) > 64 {
		errs = append(errs, errors.New("hello instance must be 8 to 64 characters"))
	}
	if len(h.Resources) == 0 {
		errs = append(errs, errors.New("hello announces no resources"))
	}
	sorted := slices.Clone(h.Resources)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(h.Resources) {
		errs = append(errs, errors.New("hello announces a resource twice"))
	}
	return errors.Join(errs...)
}

// Ack accepts a hello.
type Ack struct {
	// Edge is the SPIFFE ID of the edge that accepted the connector.
	Edge string `json:"edge"`
	// Issuer is the iss of the identity assertions the edge signs.
	Issuer string `json:"issuer"`
	// Keys are the edge's published signing keys, which verify them.
	Keys Keys `json:"keys"`
}

// Keys carries the edge's published signing keys as a JWKS (RFC 7517).
// The connector verifies every request's identity assertion with them.
type Keys struct {
	JWKS json.RawMessage `json:"jwks,omitempty"`
}

// Refusal refuses a hello; the edge closes the connection after sending it.
type Refusal struct {
	Reason string `json:"reason"`
}

// Drain asks the edge to open no new streams on this connection; the
// connector closes it when its streams have finished.
type Drain struct{}

// Heartbeat is what a connector sends on its control stream every
// [HeartbeatInterval]. QUIC keep-alives are PING packets too small for a
// peer to answer with a stateless reset (RFC 9000 section 10.3 sets a
// floor, quic-go a higher one), so an edge that restarted after a crash
// would stay unnoticed until the idle timeout. A heartbeat is padded to
// draw the reset, and the connector redials at once.
type Heartbeat struct {
	Pad string `json:"pad"`
}

// HeartbeatPad fills every heartbeat well above the stateless-reset floor.
var HeartbeatPad = strings.Repeat("-", 64)

// HeartbeatInterval returns how often a connector sends heartbeats for
// the keep-alive period: twice per period, so that a restarted edge is
// noticed within about half a keep-alive.
func HeartbeatInterval(keepAlive time.Duration) time.Duration {
	return max(keepAlive/2, 100*time.Millisecond)
}

// SilenceLimit is how long an edge waits for the next heartbeat of a
// connector that sends one every interval before it drops the tunnel:
// six intervals, so that a few lost datagrams never drop a live tunnel.
func SilenceLimit(interval time.Duration) time.Duration {
	return 6 * interval
}

// StreamHeader opens every request stream.
type StreamHeader struct {
	// Resource names the resource whose upstream gets the request.
	Resource string `json:"resource"`
	// RequestID is the edge's ID of the request, for logs on both sides.
	RequestID string `json:"request_id"`
}
