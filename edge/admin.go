package edge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/store"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// adminPrefix starts every path of the admin API.
const adminPrefix = "/v1/admin/"

// DefaultJoinTokenTTL is the lifetime of a join token that names none.
const DefaultJoinTokenTTL = 15 * time.Minute

// adminHandler serves the admin API. Callers have been authenticated: by
// the socket's file mode, or by an admin certificate on the front door.
func (e *Edge) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+adminPrefix+"tokens", e.adminCreateToken)
	mux.HandleFunc("GET "+adminPrefix+"tokens", e.adminListTokens)
	mux.HandleFunc("GET "+adminPrefix+"connectors", e.adminListConnectors)
	mux.HandleFunc("GET "+adminPrefix+"agents", e.adminListAgents)
	mux.HandleFunc("POST "+adminPrefix+"revoke", e.adminRevoke)
	mux.HandleFunc("GET "+adminPrefix+"revocations", e.adminListRevocations)
	mux.HandleFunc("GET "+adminPrefix+"ca", e.adminCAStatus)
	mux.HandleFunc("POST "+adminPrefix+"ca/{step}", e.adminCAStep)
	mux.HandleFunc("GET "+adminPrefix+"keys", e.adminListKeys)
	mux.HandleFunc("POST "+adminPrefix+"keys/rotate", e.adminRotateKeys)
	mux.HandleFunc("GET "+adminPrefix+"audit", e.adminAudit)
	return mux
}

// serveRemoteAdmin serves the admin API on the front door, to admin
// certificates only.
func (e *Edge) serveRemoteAdmin(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		adminError(w, http.StatusUnauthorized, "the admin API needs an admin certificate")
		return
	}
	id, leaf, err := certs.PeerIdentity(*r.TLS, e.ca.TrustDomain(), certs.KindAdmin)
	if err != nil {
		e.logger.WarnContext(r.Context(), "admin request refused", logkey.RemoteAddr, r.RemoteAddr, logkey.Error, err)
		adminError(w, http.StatusUnauthorized, "the admin API needs an admin certificate")
		return
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		adminError(w, http.StatusUnauthorized, revokedMessage(id, rev))
		return
	}
	e.adminHandler().ServeHTTP(w, r)
}

// listenUnix listens on a unix socket that only the owner may open,
// replacing a stale socket file. Connecting needs write permission on the
// socket, which the usual umask already withholds from others until the
// chmod below.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return false
	}
	return true
}

// TokenRequest asks for a join token.
type TokenRequest struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// TTL is the token's lifetime; zero means [DefaultJoinTokenTTL].
	TTL time.Duration `json:"ttl"`
}

// TokenInfo describes a join token. Token, the secret wire form, is set
// only in the answer that creates it.
type TokenInfo struct {
	Token      string    `json:"token,omitempty"`
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	State      string    `json:"state"`
	UsedAt     time.Time `json:"used_at,omitzero"`
	UsedSerial string    `json:"used_serial,omitempty"`
}

// CreateJoinToken makes a one-time join token for an agent or a
// connector. Its secret exists only in the answer; the store keeps a
// hash.
func (e *Edge) CreateJoinToken(req TokenRequest) (TokenInfo, error) {
	kind, err := certs.ParseKind(req.Kind)
	if err != nil {
		return TokenInfo{}, err
	}
	if kind != certs.KindAgent && kind != certs.KindConnector {
		return TokenInfo{}, fmt.Errorf("join tokens are for agents and connectors, not %ss", kind)
	}
	if _, err := certs.NewIdentity(e.ca.TrustDomain(), kind, req.Name); err != nil {
		return TokenInfo{}, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultJoinTokenTTL
	}
	if ttl < time.Second || ttl > e.cfg.MaxJoinTokenTTL {
		return TokenInfo{}, fmt.Errorf("token lifetime %s outside [1s, %s]", ttl, e.cfg.MaxJoinTokenTTL)
	}
	tok := enroll.JoinToken{ID: randomText(8, hex.EncodeToString), Secret: randomText(32, base64.RawURLEncoding.EncodeToString),
		Pin: enroll.Pin(e.ca.Root().Raw)}
	now := e.now()
	rec := store.JoinToken{ID: tok.ID, Kind: string(kind), Name: req.Name, SecretHash: enroll.SecretHash(tok.Secret),
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := e.store.PutJoinToken(rec); err != nil {
		return TokenInfo{}, fmt.Errorf("storing join token: %w", err)
	}
	e.logger.Info("join token created", logkey.TokenID, tok.ID, logkey.Kind, rec.Kind, "name", rec.Name, "expires_at", rec.ExpiresAt)
	info := tokenInfo(rec, now)
	info.Token = tok.String()
	return info, nil
}

func randomText(n int, enc func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b)
	return enc(b)
}

func tokenInfo(t store.JoinToken, now time.Time) TokenInfo {
	state := "unused"
	switch {
	case !t.UsedAt.IsZero():
		state = "used"
	case now.After(t.ExpiresAt):
		state = "expired"
	}
	return TokenInfo{ID: t.ID, Kind: t.Kind, Name: t.Name, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		State: state, UsedAt: t.UsedAt, UsedSerial: t.UsedSerial}
}

func (e *Edge) adminCreateToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	info, err := e.CreateJoinToken(req)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (e *Edge) adminListTokens(w http.ResponseWriter, _ *http.Request) {
	list, err := e.store.JoinTokens()
	if err != nil {
		adminError(w, http.StatusInternalServerError, err.Error())
		return
	}
	now := time.Now()
	out := make([]TokenInfo, 0, len(list))
	for _, t := range list {
		out = append(out, tokenInfo(t, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// IdentityInfo describes an agent or connector the edge has issued a
// certificate to.
type IdentityInfo struct {
	Identity     string    `json:"identity"`
	Name         string    `json:"name"`
	Serial       string    `json:"serial"`
	CertNotAfter time.Time `json:"cert_not_after"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Revoked      bool      `json:"revoked"`
	// The fields below are for connectors: what their live tunnels say.
	Resources   []string `json:"resources,omitempty"`
	Connections int      `json:"connections"`
	RemoteAddrs []string `json:"remote_addrs,omitempty"`
	Version     string   `json:"version,omitempty"`
}

// Identities lists the identities of a kind that the edge has issued
// certificates to, with what their live tunnels say for connectors.
func (e *Edge) Identities(kind certs.Kind) ([]IdentityInfo, error) {
	issued, err := e.store.Identities()
	if err != nil {
		return nil, err
	}
	byID := map[string]*IdentityInfo{}
	var order []string
	for _, rec := range issued {
		if rec.Kind != string(kind) {
			continue
		}
		info := &IdentityInfo{Identity: rec.Identity, Name: rec.Name, Serial: rec.Serial,
			CertNotAfter: rec.NotAfter, LastSeen: rec.LastSeen}
		info.Revoked = e.revoked.coversRecord(rec)
		byID[rec.Identity], order = info, append(order, rec.Identity)
	}
	if kind == certs.KindConnector {
		order = e.addLinks(byID, order)
	}
	out := make([]IdentityInfo, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out, nil
}

// addLinks folds the live tunnels into the connector list, adding
// connectors that hold certificates from elsewhere (airlock admin issue).
func (e *Edge) addLinks(byID map[string]*IdentityInfo, order []string) []string {
	now := time.Now()
	for _, l := range e.registry.snapshot() {
		key := l.identity.String()
		info, ok := byID[key]
		if !ok {
			info = &IdentityInfo{Identity: key, Name: l.connector}
			byID[key], order = info, append(order, key)
		}
		info.Connections++
		info.Serial, info.CertNotAfter, info.LastSeen, info.Version = l.leaf.SerialNumber.String(), l.notAfter, now, l.software
		info.Resources = l.resources
		if !slices.Contains(info.RemoteAddrs, l.remote) {
			info.RemoteAddrs = append(info.RemoteAddrs, l.remote)
		}
	}
	return order
}

func (e *Edge) adminListConnectors(w http.ResponseWriter, _ *http.Request) {
	e.writeIdentities(w, certs.KindConnector)
}

func (e *Edge) adminListAgents(w http.ResponseWriter, _ *http.Request) {
	e.writeIdentities(w, certs.KindAgent)
}

func (e *Edge) writeIdentities(w http.ResponseWriter, kind certs.Kind) {
	list, err := e.Identities(kind)
	if err != nil {
		adminError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// RevokeRequest names what to revoke: a SPIFFE ID, kind/name, or a
// decimal certificate serial.
type RevokeRequest struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// RevokeResult says what a revocation ended at once.
type RevokeResult struct {
	Revocation     store.Revocation `json:"revocation"`
	ClosedTunnels  int              `json:"closed_tunnels"`
	ClosedRequests int              `json:"closed_requests"`
}

// Revoke stores a revocation, then closes the tunnels and ends the agent
// requests it covers. From the moment it returns, handshakes, requests
// and renewals of what it names are refused; it survives restarts.
func (e *Edge) Revoke(req RevokeRequest) (RevokeResult, error) {
	rev, err := parseRevocationTarget(e.ca.TrustDomain(), req.Target)
	if err != nil {
		return RevokeResult{}, err
	}
	rev.Reason, rev.RevokedAt = req.Reason, time.Now()
	if err := e.store.AddRevocation(rev); err != nil {
		return RevokeResult{}, fmt.Errorf("storing revocation: %w", err)
	}
	e.revoked.add(rev)

	res := RevokeResult{Revocation: rev}
	for _, l := range e.registry.snapshot() {
		if _, ok := e.revoked.check(l.identity, l.leaf); ok {
			l.conn.CloseWithError(tunnel.CodeRevoked, "certificate revoked")
			res.ClosedTunnels++
		}
	}
	res.ClosedRequests = e.active.cancelRevoked(e.revoked)
	e.logger.Info("certificate revoked", logkey.Identity, rev.Identity, logkey.CertSerial, rev.Serial,
		logkey.Reason, rev.Reason, "closed_tunnels", res.ClosedTunnels, "closed_requests", res.ClosedRequests)
	return res, nil
}

func (e *Edge) adminRevoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	res, err := e.Revoke(req)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (e *Edge) adminListRevocations(w http.ResponseWriter, _ *http.Request) {
	list, err := e.store.Revocations()
	if err != nil {
		adminError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (e *Edge) adminCAStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, e.ca.Roots())
}

// RotateCA runs one step of a CA rotation: prepare, activate or retire
// (see [certs.Authority.Prepare]). Activate also re-mints the edge's own
// serving certificate from the new intermediate.
func (e *Edge) RotateCA(ctx context.Context, step string) error {
	var err error
	switch step {
	case "prepare":
		err = e.ca.Prepare()
	case "activate":
		if err = e.ca.Activate(); err == nil {
			err = e.serving.renew(ctx)
		}
	case "retire":
		err = e.ca.Retire()
	default:
		return fmt.Errorf("unknown CA rotation step %q (want prepare, activate or retire)", step)
	}
	if err != nil {
		return err
	}
	e.logger.Info("certificate authority rotated", "step", step)
	return nil
}

func (e *Edge) adminCAStep(w http.ResponseWriter, r *http.Request) {
	err := e.RotateCA(r.Context(), r.PathValue("step"))
	var status int
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, e.ca.Roots())
		return
	case errors.Is(err, certs.ErrRotationPending), errors.Is(err, certs.ErrNothingPrepared),
		errors.Is(err, certs.ErrPreviousTrusted), errors.Is(err, certs.ErrNoPrevious):
		status = http.StatusConflict
	default:
		status = http.StatusBadRequest
	}
	adminError(w, status, err.Error())
}
