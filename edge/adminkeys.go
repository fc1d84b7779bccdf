package edge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/token"
)

// keyKeep is how long a retired signing key stays published: as long as
// anything it signed may still be presented.
const keyKeep = MaxAccessTokenLifetime + token.AssertionLifetime + 2*tokenLeeway

// KeyInfo describes one token signing key for `airlock admin keys`.
type KeyInfo struct {
	// ID is the key's kid.
	ID string `json:"id"`
	// Alg is EdDSA or ES256.
	Alg string `json:"alg"`
	// Signing is true for the one key that signs now.
	Signing bool `json:"signing"`
	// CreatedAt is when the key was made.
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when a newer key took over signing; zero for the
	// signing key.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// RemoveAfter is when a retired key leaves the JWKS.
	RemoveAfter time.Time `json:"remove_after,omitzero"`
}

// RotateKeysRequest is the body of POST /v1/admin/keys/rotate.
type RotateKeysRequest struct {
	// Alg is ES256 or EdDSA; empty means the configured token_signing_alg.
	Alg string `json:"alg,omitempty"`
}

// KeyInfos lists the published signing keys, the signing one first.
func (e *Edge) KeyInfos() []KeyInfo {
	var out []KeyInfo
	for _, k := range e.keys.Keys() {
		info := KeyInfo{
			ID:        k.ID,
			Alg:       k.Alg,
			Signing:   k.RetiredAt.IsZero(),
			CreatedAt: k.CreatedAt,
			RetiredAt: k.RetiredAt,
		}
		if !k.RetiredAt.IsZero() {
			info.RemoveAfter = k.RetiredAt.Add(keyKeep)
		}
		out = append(out, info)
	}
	return out
}

func (e *Edge) adminListKeys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, e.KeyInfos())
}

// RotateKeys makes a new signing key; the old one stays published until
// every token it signed has expired.
func (e *Edge) RotateKeys(alg string) ([]KeyInfo, error) {
	if alg == "" {
		alg = e.cfg.TokenSigningAlg
	}
	k, err := e.keys.Rotate(alg)
	if err != nil {
		return nil, err
	}
	e.logger.Info("token signing key rotated", logkey.KeyID, k.ID, logkey.Alg, k.Alg)
	return e.KeyInfos(), nil
}

func (e *Edge) adminRotateKeys(w http.ResponseWriter, r *http.Request) {
	var req RotateKeysRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	list, err := e.RotateKeys(req.Alg)
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// pruneKeys drops retired keys whose tokens have all expired.
func (e *Edge) pruneKeys() {
	gone, err := e.keys.Prune()
	if err != nil {
		e.logger.Warn("removing retired signing keys failed", logkey.Error, err)
		return
	}
	for _, kid := range gone {
		e.logger.Info("retired token signing key removed", logkey.KeyID, kid)
	}
}

// AuditPage is the answer of GET /v1/admin/audit.
type AuditPage struct {
	// Records are the decision records from the asked offset on.
	Records []audit.Record `json:"records"`
	// Next is the offset to ask for the records that follow.
	Next int64 `json:"next"`
}

// adminAudit serves the audit file: ?from=OFFSET (default: the last 20
// records; a negative number: the last that many).
func (e *Edge) adminAudit(w http.ResponseWriter, r *http.Request) {
	if e.auditLog == nil {
		adminError(w, http.StatusNotFound, "the audit file is off (audit_file: off)")
		return
	}
	from := int64(-20)
	if v := r.URL.Query().Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			adminError(w, http.StatusBadRequest, "from must be a byte offset or a negative count")
			return
		}
		from = n
	}
	recs, next, err := audit.Tail(e.cfg.AuditFile, from)
	if err != nil {
		adminError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, AuditPage{Records: recs, Next: next})
}
