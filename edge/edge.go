// Package edge is the Airlock edge: the HTTPS front door where agents call
// MCP endpoints, the QUIC listener where connectors dial in, and the
// pipeline that carries each request from one to the other.
package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/plugin"
	"github.com/airlockhq/airlock/pkg/policy"
	"github.com/airlockhq/airlock/pkg/store"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

func caDir(dataDir string) string        { return filepath.Join(dataDir, "ca") }
func resetKeyFile(dataDir string) string { return filepath.Join(dataDir, "tunnel", "reset.key") }

// CADir returns the folder of the CA inside an edge's data folder.
func CADir(dataDir string) string { return caDir(dataDir) }

// StateFile returns the edge's bbolt store inside its data folder.
func StateFile(dataDir string) string { return filepath.Join(dataDir, "state.db") }

// AdminSocket returns the default admin socket of an edge's data folder.
func AdminSocket(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// Edge serves agents and connectors. Create it with [New], start it with
// [Edge.Start] and stop it with [Edge.Shutdown], or do both with
// [Edge.Run].
type Edge struct {
	cfg       Config
	logger    *slog.Logger
	ca        *certs.Authority
	id        certs.Identity
	serving   *servingCert
	registry  *registry
	sessions  *sessionTable
	metrics   *metrics
	resources map[string]Resource
	resetKey  quic.StatelessResetKey
	store     *store.Store
	revoked   *revocations
	active    *activeRequests
	seen      *lastSeen
	ready     atomic.Bool
	// clockOverride, when set (by tests), replaces time.Now as the clock
	// of join-token expiry, token issue, and the validity of the
	// certificates agents and connectors present (see now).
	clockOverride atomic.Pointer[func() time.Time]

	// issuer is the edge's public URL: iss of its tokens, and the base of
	// every endpoint URL (aud). Fixed by Start.
	issuer string
	keys   *token.KeySet
	policy *policy.Engine
	// access receives one record per authorization decision, and so
	// does auditLog unless audit_file is off.
	access   *slog.Logger
	auditLog *audit.Log
	plugins  *plugin.Host
	// fetcher pulls the policy bundle, when policy_bundle is set.
	fetcher  *policy.Fetcher
	verifier *token.Verifier
	tokens   tokenCache
	// keysGen counts key changes, so that a tunnel acknowledged with an
	// older key set is sent the current one.
	keysGen atomic.Uint64
	// tamper, set only by tests, changes tunneled requests.
	tamper atomic.Pointer[func(*http.Request)]

	// Set by Start.
	httpLn    net.Listener
	httpSrv   *http.Server
	opsLn     net.Listener
	opsSrv    *http.Server
	adminLn   net.Listener
	adminSrv  *http.Server
	udp       net.PacketConn
	transport *quic.Transport
	quicLn    *quic.Listener
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

// New checks cfg (defaults already filled), opens the CA in the data
// folder and returns an edge ready to start.
func New(cfg Config, logger *slog.Logger) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("checking edge config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ca, err := certs.Load(caDir(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	id, err := certs.NewIdentity(ca.TrustDomain(), certs.KindEdge, cfg.Name)
	if err != nil {
		return nil, err
	}
	key, err := loadResetKey(resetKeyFile(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	st, err := store.Open(StateFile(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	revoked, err := loadRevocations(st)
	if err != nil {
		st.Close()
		return nil, err
	}
	keys, err := token.OpenKeySet(st, cfg.TokenSigningAlg, keyKeep, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	fetcher, err := startFetcher(cfg, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	pol, err := policy.New(context.Background(), cfg.PolicyDir, logger)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("loading the request policy (policy_dir %s; see docs/policy.md): %w", cfg.PolicyDir, err)
	}
	var auditLog *audit.Log
	if cfg.AuditFile != "off" {
		if auditLog, err = audit.Open(cfg.AuditFile, cfg.AuditRedact); err != nil {
			st.Close()
			return nil, err
		}
	}
	plugins, err := plugin.Start(cfg.Plugins, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	reg := newRegistry()
	e := &Edge{
		cfg:       cfg,
		logger:    logger.With(logkey.Component, "edge"),
		ca:        ca,
		id:        id,
		registry:  reg,
		sessions:  newSessionTable(cfg.SessionIdleTimeout, time.Now),
		metrics:   newMetrics(reg),
		resources: map[string]Resource{},
		resetKey:  key,
		store:     st,
		revoked:   revoked,
		active:    newActiveRequests(),
		seen:      newLastSeen(st, time.Minute),
		issuer:    strings.TrimRight(cfg.PublicURL, "/"),
		keys:      keys,
		policy:    pol,
		access:    logger.With(logkey.Component, "edge.access"),
		auditLog:  auditLog,
		plugins:   plugins,
		fetcher:   fetcher,
	}
	pol.OnReload = e.policyReloaded
	e.verifier = &token.Verifier{Keys: keys, MaxLifetime: MaxAccessTokenLifetime, Leeway: tokenLeeway,
		Now: func() time.Time { return e.now() }}
	keys.OnChange(e.keysChanged)
	for _, r := range cfg.Resources {
		e.resources[r.Name] = r
	}
	e.serving = newServingCert(ca, cfg, e.logger)
	return e, nil
}

// loadResetKey reads the QUIC stateless-reset key, creating it on first
// use. Keeping it across restarts lets a restarted edge answer packets of
// its predecessor's connections with a stateless reset (RFC 9000 section
// 10.3), so connectors notice the restart at once instead of after an
// idle timeout.
func loadResetKey(file string) (quic.StatelessResetKey, error) {
	var key quic.StatelessResetKey
	data, err := os.ReadFile(file)
	if err == nil && len(data) == len(key) {
		copy(key[:], data)
		return key, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return key, fmt.Errorf("reading stateless reset key: %w", err)
	}
	rand.Read(key[:])
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return key, fmt.Errorf("creating stateless reset key: %w", err)
	}
	if err := os.WriteFile(file, key[:], 0o600); err != nil {
		return key, fmt.Errorf("writing stateless reset key: %w", err)
	}
	return key, nil
}

// Identity returns the edge's SPIFFE identity.
func (e *Edge) Identity() certs.Identity { return e.id }

// CA returns the edge's certificate authority.
func (e *Edge) CA() *certs.Authority { return e.ca }

// Addr returns the front door's address once started.
func (e *Edge) Addr() net.Addr { return e.httpLn.Addr() }

// TunnelAddr returns the tunnel listener's address once started.
func (e *Edge) TunnelAddr() net.Addr { return e.udp.LocalAddr() }

// OpsAddr returns the ops listener's address once started, or nil when it
// is off.
func (e *Edge) OpsAddr() net.Addr {
	if e.opsLn == nil {
		return nil
	}
	return e.opsLn.Addr()
}

// Start binds every listener and starts serving in the background. The
// ctx bounds startup only.
func (e *Edge) Start(ctx context.Context) error {
	if err := e.serving.start(ctx); err != nil {
		e.store.Close()
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.stop = stop
	if err := e.listen(); err != nil {
		stop()
		e.closeListeners()
		e.store.Close()
		return err
	}
	e.fixIssuer()
	e.wg.Go(func() { e.serving.renewLoop(runCtx) })
	e.wg.Go(func() { e.sweepSessions(runCtx) })
	e.wg.Go(func() { e.policy.Watch(runCtx, e.cfg.PolicyReloadInterval) })
	if e.fetcher != nil {
		e.wg.Go(func() { e.fetcher.Run(runCtx, e.cfg.PolicyBundle.Poll) })
	}
	e.wg.Go(func() { e.acceptConnectors(runCtx) })
	e.wg.Go(func() { e.serveHTTP(e.httpSrv, tls.NewListener(e.httpLn, e.httpSrv.TLSConfig), "front door") })
	if e.opsSrv != nil {
		e.wg.Go(func() { e.serveHTTP(e.opsSrv, e.opsLn, "ops") })
	}
	if e.adminSrv != nil {
		e.wg.Go(func() { e.serveHTTP(e.adminSrv, e.adminLn, "admin socket") })
	}
	e.ready.Store(true)
	e.logger.InfoContext(ctx, "edge listening",
		"front_door", e.Addr().String(), "tunnel", e.TunnelAddr().String(),
		"ops", addrString(e.OpsAddr()), logkey.Identity, e.id.String())
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func (e *Edge) listen() error {
	var err error
	if e.httpLn, err = net.Listen("tcp", e.cfg.Listen); err != nil {
		return fmt.Errorf("listening for agents on %s: %w", e.cfg.Listen, err)
	}
	e.httpSrv = e.newFrontDoor()

	tunnelAddr := e.cfg.TunnelListen
	if tunnelAddr == e.cfg.Listen {
		// Same host and port for TCP and UDP; with port 0 the UDP side
		// takes the port the TCP side got.
		tunnelAddr = e.httpLn.Addr().String()
	}
	if e.udp, err = net.ListenPacket("udp", tunnelAddr); err != nil {
		return fmt.Errorf("listening for connectors on %s: %w", tunnelAddr, err)
	}
	e.transport = &quic.Transport{Conn: e.udp, StatelessResetKey: &e.resetKey}
	if e.quicLn, err = e.transport.Listen(e.tunnelTLS(), e.cfg.QUIC.Config()); err != nil {
		return fmt.Errorf("listening for connectors on %s: %w", tunnelAddr, err)
	}

	if e.cfg.OpsListen != "off" {
		if e.opsLn, err = net.Listen("tcp", e.cfg.OpsListen); err != nil {
			return fmt.Errorf("listening for metrics on %s: %w", e.cfg.OpsListen, err)
		}
		e.opsSrv = e.newOpsServer()
	}
	if e.cfg.AdminSocket != "off" {
		if e.adminLn, err = listenUnix(e.cfg.AdminSocket); err != nil {
			return fmt.Errorf("listening for admin commands: %w", err)
		}
		e.adminSrv = &http.Server{Handler: e.adminHandler(), ReadHeaderTimeout: e.cfg.ReadHeaderTimeout}
	}
	return nil
}

func (e *Edge) closeListeners() {
	for _, c := range []interface{ Close() error }{e.httpLn, e.opsLn, e.adminLn, e.quicLn, e.transport, e.udp} {
		if c != nil && !isNilCloser(c) {
			c.Close()
		}
	}
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case net.Listener:
		return v == nil
	case *quic.Listener:
		return v == nil
	case *quic.Transport:
		return v == nil
	case net.PacketConn:
		return v == nil
	}
	return false
}

func (e *Edge) serveHTTP(srv *http.Server, ln net.Listener, name string) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		e.logger.Error("listener failed", "listener", name, logkey.Error, err)
	}
}

// Shutdown stops taking requests and connectors, lets in-flight requests
// (SSE streams included) finish until ctx ends, then closes everything.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.ready.Store(false)
	e.logger.Info("edge shutting down")
	err := e.httpSrv.Shutdown(ctx)
	if err != nil {
		e.logger.Warn("grace period over, cutting agent requests", logkey.Error, err)
		e.httpSrv.Close()
	}
	for _, l := range e.registry.snapshot() {
		l.conn.CloseWithError(tunnel.CodeShutdown, "edge shutting down")
	}
	e.stop()
	if e.opsSrv != nil {
		e.opsSrv.Close()
	}
	if e.adminSrv != nil {
		e.adminSrv.Close()
	}
	e.quicLn.Close()
	e.transport.Close()
	e.udp.Close()
	e.wg.Wait()
	if e.auditLog != nil {
		e.auditLog.Close()
	}
	e.plugins.Close()
	if err := e.store.Close(); err != nil {
		e.logger.Warn("closing store failed", logkey.Error, err)
	}
	e.logger.Info("edge stopped")
	return nil
}

// Run starts the edge and serves until ctx ends, then shuts down within
// the configured grace period.
func (e *Edge) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownGrace)
	defer cancel()
	return e.Shutdown(sctx)
}

func (e *Edge) sweepSessions(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.sessions.sweep()
			e.pruneKeys()
			if _, err := e.store.PruneJoinTokens(time.Now().Add(-24 * time.Hour)); err != nil {
				e.logger.Warn("pruning join tokens failed", logkey.Error, err)
			}
		}
	}
}

// fixIssuer settles the public URL once the front door listens: a
// configured port 0 (tests, airlock dev) becomes the port it got.
func (e *Edge) fixIssuer() {
	if u, err := url.Parse(e.issuer); err == nil && u.Port() == "0" {
		_, port, _ := net.SplitHostPort(e.httpLn.Addr().String())
		u.Host = net.JoinHostPort(u.Hostname(), port)
		e.issuer = u.String()
	}
	e.verifier.Issuer = e.issuer
}

// Issuer returns the edge's public URL, the iss of its tokens.
func (e *Edge) Issuer() string { return e.issuer }

// Keys returns the edge's signing keys.
func (e *Edge) Keys() *token.KeySet { return e.keys }

// policyReloaded counts policy reloads for the metrics.
func (e *Edge) policyReloaded(_ string, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	e.metrics.policyReloads.WithLabelValues(result).Inc()
}

// Policy returns the edge's policy engine.
func (e *Edge) Policy() *policy.Engine { return e.policy }

// startFetcher fetches the policy bundle once, when policy_bundle is set.
// A bundle that cannot be fetched or verified stops the edge unless an
// earlier one is on disk, which then stays in force.
func startFetcher(cfg Config, logger *slog.Logger) (*policy.Fetcher, error) {
	b := cfg.PolicyBundle
	if b == nil {
		return nil, nil
	}
	key, err := os.ReadFile(b.PublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading policy_bundle.public_key_file: %w", err)
	}
	f := &policy.Fetcher{URL: b.URL, PublicKey: string(key), Algorithm: b.Algorithm, Dest: cfg.PolicyDir,
		Client: &http.Client{Timeout: 30 * time.Second}, Logger: logger.With(logkey.Component, "policy.bundle")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Fetch(ctx); err != nil {
		if _, statErr := os.Stat(cfg.PolicyDir); statErr != nil {
			return nil, err
		}
		logger.Warn("policy bundle not fetched at start; using the last one", logkey.Error, err)
	}
	return f, nil
}
