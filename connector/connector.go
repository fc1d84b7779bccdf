// Package connector is the Airlock connector: it runs next to private MCP
// servers, dials out to the edges over QUIC, and relays the requests the
// edges send it to the upstreams in its own configuration. Nothing it
// serves listens on a network.
package connector

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// Software names this build in hellos.
const Software = "airlock-connector/0.1"

// Connector keeps tunnels to its edges and serves their requests. Create it
// with [New] and run it with [Connector.Run].
type Connector struct {
	cfg      Config
	logger   *slog.Logger
	creds    credentials
	holder   *enroll.Holder // nil with certificate files
	renewed  *broadcast
	domain   string
	instance string
	upstream map[string]*upstream
	packets  net.PacketConn

	inFlight atomic.Int64
	draining atomic.Bool
	renewals atomic.Int64
	// replays remembers the assertions already relayed.
	replays token.ReplayCache

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[*session]struct{}
}

type upstream struct {
	url    *url.URL
	client *http.Client
	stdio  *stdioServer // nil for an HTTP upstream
}

// Options are the parts of a connector that do not come from its file.
type Options struct {
	// Logger receives the connector's logs; nil discards them.
	Logger *slog.Logger
	// PacketConn, if set, carries the connector's QUIC traffic instead of
	// a new UDP socket; the connector closes it when it stops. Tests use
	// it to cut the connector off the network at once.
	PacketConn net.PacketConn
}

// New checks cfg (defaults already filled), loads the connector's
// credentials and returns a connector ready to run.
func New(cfg Config, opts Options) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("checking connector config: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	creds, holder, err := loadCredentials(cfg)
	if err != nil {
		return nil, err
	}
	id := creds.Identity()
	if id.Kind != certs.KindConnector || id.Name != cfg.Name {
		return nil, fmt.Errorf("certificate names %s, not connector %q", id, cfg.Name)
	}
	logger = logger.With(logkey.Component, "connector", logkey.ConnectorName, cfg.Name)
	ups, err := newUpstreams(cfg.Resources, cfg.Name, logger)
	if err != nil {
		return nil, err
	}
	c := &Connector{
		cfg:      cfg,
		logger:   logger,
		creds:    creds,
		holder:   holder,
		renewed:  newBroadcast(),
		domain:   id.Domain,
		instance: newInstanceID(),
		upstream: ups,
		packets:  opts.PacketConn,
		sessions: map[*session]struct{}{},
	}
	return c, nil
}

func newUpstreams(resources []Resource, connector string, logger *slog.Logger) (map[string]*upstream, error) {
	ups := map[string]*upstream{}
	for _, r := range resources {
		if r.Command != "" {
			ups[r.Name] = newStdioUpstream(r, connector, logger)
			continue
		}
		u, err := url.Parse(r.URL)
		if err != nil {
			return nil, fmt.Errorf("parsing upstream of %s: %w", r.Name, err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Bodies pass through as the upstream encoded them, and no header
		// timeout: a tool call may think for minutes before it answers.
		tr.DisableCompression = true
		tr.MaxIdleConnsPerHost = 256
		if r.CAFile != "" {
			pool, err := certs.ReadPool(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("loading CA of upstream %s: %w", r.Name, err)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		client := &http.Client{
			Transport: tr,
			// Redirects go back to the agent untouched: following one
			// could reach a URL outside this connector's configuration.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		ups[r.Name] = &upstream{url: u, client: client}
	}
	return ups, nil
}

// newStdioUpstream bridges a command resource: its client reaches the
// resource's in-process Streamable HTTP server through a pipe.
func newStdioUpstream(r Resource, connector string, logger *slog.Logger) *upstream {
	srv := newStdioServer(r, connector, logger.With(logkey.Component, "connector.stdio"))
	tr := &http.Transport{
		DialContext:         srv.listener.DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 256,
	}
	return &upstream{
		url:    &url.URL{Scheme: "http", Host: r.Name + ".stdio", Path: "/mcp"},
		client: &http.Client{Transport: tr},
		stdio:  srv,
	}
}

// startStdio serves the command resources; stopStdio stops all their
// processes and waits until they are reaped.
func (c *Connector) startStdio() {
	for _, up := range c.upstream {
		if up.stdio != nil {
			up.stdio.start()
		}
	}
}

func (c *Connector) stopStdio() {
	var wg sync.WaitGroup
	for _, up := range c.upstream {
		if up.stdio != nil {
			wg.Go(up.stdio.close)
		}
	}
	wg.Wait()
}

func newInstanceID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Instance returns the random ID of this connector process.
func (c *Connector) Instance() string { return c.instance }

// Connected returns how many tunnels the edges have acknowledged.
func (c *Connector) Connected() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for s := range c.sessions {
		if s.acked.Load() {
			n++
		}
	}
	return n
}

// InFlight returns how many requests the connector is relaying.
func (c *Connector) InFlight() int64 { return c.inFlight.Load() }

// Run keeps cfg.Connections tunnels to every edge until ctx ends, then
// drains: it asks the edges for no new streams, waits for in-flight
// requests up to DrainGrace, and closes its tunnels. It returns nil after a
// clean drain.
func (c *Connector) Run(ctx context.Context) error {
	pc := c.packets
	if pc == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return fmt.Errorf("opening UDP socket: %w", err)
		}
		pc = udp
	}
	tr := &quic.Transport{Conn: pc}
	defer pc.Close()
	defer tr.Close()
	c.startStdio()
	// Runs after the tunnels are closed: no request can start a process
	// any more, and every child is stopped before Run returns.
	defer c.stopStdio()

	dialCtx, stopDialing := context.WithCancel(context.WithoutCancel(ctx))
	ctx, expired := c.startRenewal(ctx)
	var wg sync.WaitGroup
	for _, addr := range c.cfg.Edges {
		for i := range c.cfg.Connections {
			wg.Go(func() { c.keep(dialCtx, tr, addr, i) })
		}
	}
	c.logger.InfoContext(ctx, "connector started",
		logkey.Instance, c.instance, "edges", c.cfg.Edges, "connections", c.cfg.Connections)

	<-ctx.Done()
	c.drain()
	stopDialing()
	c.closeSessions(tunnel.CodeShutdown, "connector shutting down")
	wg.Wait()
	c.logger.Info("connector stopped")
	return expired()
}

// drain tells every edge to send no new streams and waits for the
// requests in flight, at most DrainGrace.
func (c *Connector) drain() {
	c.draining.Store(true)
	c.mu.Lock()
	for s := range c.sessions {
		s.sendDrain()
	}
	c.mu.Unlock()
	c.logger.Info("connector draining", logkey.InFlight, c.inFlight.Load(), "grace", c.cfg.DrainGrace)

	deadline := time.Now().Add(c.cfg.DrainGrace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.inFlight.Load() > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	if n := c.inFlight.Load(); n > 0 {
		c.logger.Warn("drain grace period over, cutting requests", logkey.InFlight, n)
	}
}

func (c *Connector) closeSessions(code quic.ApplicationErrorCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.sessions {
		s.conn.CloseWithError(code, reason)
	}
}

// keep holds one tunnel to addr up until ctx ends, redialing with backoff.
// When the certificate is renewed it dials a new tunnel with the new one
// and retires the old tunnel once the new one is up, so that no request
// is dropped (make before break).
func (c *Connector) keep(ctx context.Context, tr *quic.Transport, addr string, slot int) {
	logger := c.logger.With(logkey.Edge, addr, logkey.ConnID, slot)
	attempt := 0
	for ctx.Err() == nil && !c.draining.Load() {
		renewed := c.renewed.wait()
		s, err := c.connect(ctx, tr, addr, logger)
		if err == nil {
			var up time.Duration
			up, err = c.hold(ctx, tr, addr, s, renewed, logger)
			if up >= c.cfg.Backoff.ResetAfter {
				attempt = 0
			}
		}
		if ctx.Err() != nil || c.draining.Load() {
			return
		}
		wait := c.cfg.Backoff.delay(attempt, jitter)
		attempt++
		level := slog.LevelWarn
		var refused *RefusedError
		if errors.As(err, &refused) {
			level = slog.LevelError
		}
		logger.Log(ctx, level, "tunnel down, redialing",
			logkey.Error, err, logkey.Attempt, attempt, logkey.Backoff, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// hold serves through s until its connection ends, and says how long the
// tunnel was up. After each renewal it dials a tunnel with the new
// certificate and only then retires the old one; if that dial fails, the
// old tunnel keeps serving until it ends.
func (c *Connector) hold(
	ctx context.Context,
	tr *quic.Transport,
	addr string,
	s *session,
	renewed <-chan struct{},
	logger *slog.Logger,
) (time.Duration, error) {
	start := time.Now()
	for {
		select {
		case <-renewed:
			renewed = c.renewed.wait()
			next, err := c.connect(ctx, tr, addr, logger)
			if err != nil {
				logger.Warn("dialing with the renewed certificate failed, keeping the old tunnel", logkey.Error, err)
				continue
			}
			go s.retire()
			s = next
		case <-s.done:
			return time.Since(start), s.err
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		}
	}
}

// connect dials addr and says hello; once the edge has acknowledged, the
// session serves streams in the background until its connection ends,
// then closes done.
func (c *Connector) connect(ctx context.Context, tr *quic.Transport, addr string, logger *slog.Logger) (*session, error) {
	conn, err := c.dial(ctx, tr, addr)
	if err != nil {
		return nil, err
	}
	s := &session{c: c, conn: conn, addr: addr, logger: logger, done: make(chan struct{})}
	c.mu.Lock()
	c.sessions[s] = struct{}{}
	c.mu.Unlock()
	if err := s.start(ctx); err != nil {
		c.forget(s)
		return nil, err
	}
	go func() {
		defer close(s.done)
		defer c.forget(s)
		s.err = s.acceptStreams()
	}()
	return s, nil
}

func (c *Connector) forget(s *session) {
	c.mu.Lock()
	delete(c.sessions, s)
	c.mu.Unlock()
}

func (c *Connector) dial(ctx context.Context, tr *quic.Transport, addr string) (*quic.Conn, error) {
	udpAddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolving edge %s: %w", addr, err)
	}
	serverName := c.cfg.ServerName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(addr)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QUIC.HandshakeTimeout)
	defer cancel()
	conn, err := tr.Dial(ctx, udpAddr, c.tlsConfig(serverName), c.cfg.QUIC.Config())
	if err != nil {
		return nil, fmt.Errorf("dialing edge %s: %w", addr, err)
	}
	return conn, nil
}

func (c *Connector) tlsConfig(serverName string) *tls.Config {
	tc := c.creds.TLSConfig(serverName, tunnel.ALPN)
	// Any certificate of the CA would pass the chain check; only an edge
	// identity of our trust domain may terminate the tunnel.
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		_, _, err := certs.PeerIdentity(cs, c.domain, certs.KindEdge)
		return err
	}
	return tc
}
