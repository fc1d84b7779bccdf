package edge

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/store"
)

// maxLifecycleBody bounds enrollment and renewal bodies: a CSR and a
// token fit many times over.
const maxLifecycleBody = 64 << 10

// lifecycleError is a refusal of the certificate endpoints, with what the
// holder is told.
type lifecycleError struct {
	status int
	code   string
	desc   string
}

func (e *lifecycleError) Error() string { return e.desc }

func refusal(status int, code, format string, args ...any) *lifecycleError {
	return &lifecycleError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

// serveTrustBundle answers the PEM of every root the deployment trusts.
// It needs no client certificate: new hosts check it against the pin in
// their join token.
func (e *Edge) serveTrustBundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pemBundle(e.ca.Bundle()))
}

func pemBundle(list []*x509.Certificate) []byte {
	var out []byte
	for _, c := range list {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// serveEnroll redeems a join token for a certificate. The token is marked
// used in the same store transaction that checks it, so it works once,
// also across restarts; a refused request leaves it unused.
func (e *Edge) serveEnroll(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	req, err := readLifecycleRequest(w, r)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "enroll", err)
		return
	}
	tok, err := enroll.ParseJoinToken(req.Token)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "enroll", refusal(http.StatusUnauthorized, enroll.CodeInvalidToken, "%v", err))
		return
	}
	var chain []*x509.Certificate
	_, err = e.store.RedeemJoinToken(tok.ID, enroll.SecretHash(tok.Secret), e.now(), func(t store.JoinToken) (string, error) {
		chain, err = e.signForToken(r.Context(), t, req)
		if err != nil {
			return "", err
		}
		return chain[0].SerialNumber.String(), nil
	})
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "enroll", tokenRefusal(tok.ID, err))
		return
	}
	e.issued(r.Context(), chain[0], "enroll", reqID)
	e.writeIssued(w, chain)
}

// tokenRefusal turns the store's answer into what the holder is told.
func tokenRefusal(id string, err error) error {
	var lerr *lifecycleError
	switch {
	case errors.As(err, &lerr):
		return lerr
	case errors.Is(err, store.ErrTokenUnknown):
		return refusal(http.StatusUnauthorized, enroll.CodeInvalidToken, "join token %s is unknown or its secret is wrong", id)
	case errors.Is(err, store.ErrTokenUsed):
		return refusal(http.StatusUnauthorized, enroll.CodeInvalidToken, "join token %s has already been used: ask an admin for a new one", id)
	case errors.Is(err, store.ErrTokenExpired):
		return refusal(http.StatusUnauthorized, enroll.CodeInvalidToken, "join token %s has expired: ask an admin for a new one", id)
	}
	return err
}

// signForToken checks what the holder asks for against the token, then
// signs its CSR. It runs inside the redemption: an error leaves the token
// unused.
func (e *Edge) signForToken(ctx context.Context, t store.JoinToken, req enroll.Request) ([]*x509.Certificate, error) {
	if req.Kind != "" && req.Kind != t.Kind {
		return nil, refusal(http.StatusForbidden, enroll.CodeInvalidToken,
			"join token %s is for kind %s, not %s", t.ID, t.Kind, req.Kind)
	}
	if req.Name != "" && req.Name != t.Name {
		return nil, refusal(http.StatusForbidden, enroll.CodeInvalidToken,
			"join token %s is for %s %q, not %q", t.ID, t.Kind, t.Name, req.Name)
	}
	kind, err := certs.ParseKind(t.Kind)
	if err != nil {
		return nil, err
	}
	id, err := certs.NewIdentity(e.ca.TrustDomain(), kind, t.Name)
	if err != nil {
		return nil, err
	}
	csr, err := parseCSR(req.CSR, id)
	if err != nil {
		return nil, err
	}
	return e.sign(ctx, csr, id)
}

// serveRenew issues a new certificate to the holder of a valid one, for
// the same identity, presented over mutual TLS.
func (e *Edge) serveRenew(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	id, err := e.renewer(r)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "renew", err)
		return
	}
	req, err := readLifecycleRequest(w, r)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "renew", err)
		return
	}
	csr, err := parseCSR(req.CSR, id)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "renew", err)
		return
	}
	chain, err := e.sign(r.Context(), csr, id)
	if err != nil {
		e.lifecycleFailed(w, r, reqID, "renew", err)
		return
	}
	e.issued(r.Context(), chain[0], "renew", reqID)
	e.writeIssued(w, chain)
}

// renewer authenticates a renewal: a verified agent or connector
// certificate that is not revoked.
func (e *Edge) renewer(r *http.Request) (certs.Identity, error) {
	if r.TLS == nil {
		return certs.Identity{}, refusal(http.StatusUnauthorized, enroll.CodeUnauthorized, "renewal needs the current certificate over mutual TLS")
	}
	id, leaf, err := certs.PeerIdentity(*r.TLS, e.ca.TrustDomain(), certs.KindAgent, certs.KindConnector)
	if err != nil {
		return certs.Identity{}, refusal(http.StatusUnauthorized, enroll.CodeUnauthorized, "renewal needs a valid agent or connector certificate: %v", err)
	}
	if e.now().After(leaf.NotAfter) {
		return certs.Identity{}, refusal(http.StatusUnauthorized, enroll.CodeUnauthorized, "certificate of %s has expired: enroll again with a new join token", id)
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		return certs.Identity{}, refusal(http.StatusForbidden, enroll.CodeRevoked, "%s", revokedMessage(id, rev))
	}
	return id, nil
}

func revokedMessage(id certs.Identity, rev store.Revocation) string {
	msg := fmt.Sprintf("certificate of %s was revoked at %s", id, rev.RevokedAt.UTC().Format(time.RFC3339))
	if rev.Reason != "" {
		msg += ": " + rev.Reason
	}
	return msg
}

func readLifecycleRequest(w http.ResponseWriter, r *http.Request) (enroll.Request, error) {
	var req enroll.Request
	if r.Method != http.MethodPost {
		return req, refusal(http.StatusMethodNotAllowed, enroll.CodeInvalidRequest, "use POST")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLifecycleBody))
	if err != nil {
		return req, refusal(http.StatusBadRequest, enroll.CodeInvalidRequest, "reading request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, refusal(http.StatusBadRequest, enroll.CodeInvalidRequest, "request body is not a valid JSON request: %v", err)
	}
	return req, nil
}

// parseCSR checks a CSR: PEM, a valid self-signature, a strong key, and
// no names other than the identity the edge is about to assert.
func parseCSR(text string, id certs.Identity) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, refusal(http.StatusBadRequest, enroll.CodeInvalidCSR, "csr is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, refusal(http.StatusBadRequest, enroll.CodeInvalidCSR, "parsing csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refusal(http.StatusBadRequest, enroll.CodeInvalidCSR, "csr signature is invalid: %v", err)
	}
	if err := certs.CheckPublicKey(csr.PublicKey); err != nil {
		return nil, refusal(http.StatusBadRequest, enroll.CodeInvalidCSR, "csr key refused: %v", err)
	}
	if extra := foreignNames(csr, id); len(extra) > 0 {
		return nil, refusal(http.StatusForbidden, enroll.CodeInvalidCSR,
			"csr asks for names this enrollment does not grant: %v (it grants %s only)", extra, id)
	}
	return csr, nil
}

// foreignNames lists the names in csr other than id's SPIFFE ID and name.
func foreignNames(csr *x509.CertificateRequest, id certs.Identity) []string {
	var extra []string
	if cn := csr.Subject.CommonName; cn != "" && cn != id.Name {
		extra = append(extra, "CN="+cn)
	}
	for _, n := range csr.DNSNames {
		extra = append(extra, "DNS:"+n)
	}
	for _, ip := range csr.IPAddresses {
		extra = append(extra, "IP:"+ip.String())
	}
	for _, m := range csr.EmailAddresses {
		extra = append(extra, "email:"+m)
	}
	for _, u := range csr.URIs {
		if u.String() != id.String() {
			extra = append(extra, "URI:"+u.String())
		}
	}
	return extra
}

func (e *Edge) sign(ctx context.Context, csr *x509.CertificateRequest, id certs.Identity) ([]*x509.Certificate, error) {
	life := e.cfg.AgentCertLifetime
	if id.Kind == certs.KindConnector {
		life = e.cfg.ConnectorCertLifetime
	}
	chain, err := e.ca.Sign(ctx, csr, certs.SignRequest{Kind: id.Kind, Name: id.Name, Lifetime: life})
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", id, err)
	}
	return chain, nil
}

// issued records a new certificate in the store and the log.
func (e *Edge) issued(ctx context.Context, leaf *x509.Certificate, via, reqID string) {
	id, _ := certs.IdentityOf(leaf)
	rec := store.Issued{
		Identity: id.String(), Kind: string(id.Kind), Name: id.Name,
		Serial: leaf.SerialNumber.String(), Fingerprint: certs.Fingerprint(leaf),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, IssuedAt: time.Now(), Via: via,
	}
	if err := e.store.RecordIssued(rec); err != nil {
		e.logger.WarnContext(ctx, "recording issued certificate failed", logkey.Identity, rec.Identity, logkey.Error, err)
	}
	e.logger.InfoContext(ctx, "certificate issued", "via", via, logkey.RequestID, reqID,
		logkey.Identity, rec.Identity, logkey.CertSerial, rec.Serial,
		logkey.CertFingerprint, rec.Fingerprint, logkey.CertNotAfter, leaf.NotAfter)
}

func (e *Edge) writeIssued(w http.ResponseWriter, chain []*x509.Certificate) {
	id, _ := certs.IdentityOf(chain[0])
	writeJSON(w, http.StatusOK, enroll.Response{
		Identity:    id.String(),
		Certificate: string(pemBundle(chain)),
		TrustBundle: string(pemBundle(e.ca.Bundle())),
	})
}

// lifecycleFailed answers a refusal. The holder is told what was wrong
// with its own request; the log also gets the request ID and the cause.
func (e *Edge) lifecycleFailed(w http.ResponseWriter, r *http.Request, reqID, op string, err error) {
	resp := enroll.ErrorResponse{Error: enroll.CodeServerError, Description: "internal error", RequestID: reqID}
	status := http.StatusInternalServerError
	var lerr *lifecycleError
	if errors.As(err, &lerr) {
		resp.Error, resp.Description, status = lerr.code, lerr.desc, lerr.status
	}
	e.logger.WarnContext(r.Context(), "certificate request refused", "operation", op,
		logkey.RequestID, reqID, logkey.RemoteAddr, r.RemoteAddr, logkey.Status, status, logkey.Error, err)
	writeJSON(w, status, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
