package edge

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/token"
)

// tokenLeeway is the clock skew the edge allows on access tokens.
const tokenLeeway = 30 * time.Second

// maxTokenForm bounds the body of a token request.
const maxTokenForm = 64 << 10

// oauthError answers a token request with an RFC 6749 section 5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(token.ErrorResponse{Error: code, Description: desc})
}

// endpointURL is the URL of a resource's MCP endpoint: the audience of
// its tokens.
func (e *Edge) endpointURL(resource string) string {
	return e.issuer + "/mcp/" + resource
}

// resourceOf returns the resource name an MCP endpoint URL of this edge
// names.
func (e *Edge) resourceOf(endpoint string) (string, bool) {
	name, ok := strings.CutPrefix(endpoint, e.issuer+"/mcp/")
	if !ok {
		return "", false
	}
	_, known := e.resources[name]
	return name, known
}

// serveToken is the token endpoint (RFC 6749 section 3.2): the client
// credentials grant and token exchange (RFC 8693), both with the agent
// authenticated by its certificate (RFC 8705 section 2.1).
func (e *Edge) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(
			w,
			http.StatusMethodNotAllowed,
			"invalid_request",
			"the token endpoint takes POST",
		)
		return
	}
	id, leaf, ok := e.tokenClient(w, r)
	if !ok {
		return
	}
	form, ferr := readTokenForm(w, r, id)
	if ferr != nil {
		oauthError(w, ferr.status, ferr.code, ferr.desc)
		return
	}
	var grant grantRequest
	var err *oauthFailure
	switch form.Get("grant_type") {
	case token.GrantClientCredentials:
		grant, err = e.clientCredentials(form)
	case token.GrantTokenExchange:
		grant, err = e.tokenExchange(form, leaf)
	case "":
		err = &oauthFailure{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		desc := fmt.Sprintf(
			"grant_type %q is not supported (client_credentials or token exchange)",
			form.Get("grant_type"),
		)
		err = &oauthFailure{http.StatusBadRequest, "unsupported_grant_type", desc}
	}
	if err != nil {
		oauthError(w, err.status, err.code, err.desc)
		return
	}
	e.issueToken(w, r, id, leaf, grant)
}

// readTokenForm reads the form of a token request: in the body only,
// each parameter once (resource may repeat), and no parameter Airlock
// would otherwise ignore (RFC 8693 actor tokens, audience, other token
// types), since ignoring one would grant more than was asked.
func readTokenForm(
	w http.ResponseWriter,
	r *http.Request,
	id certs.Identity,
) (url.Values, *oauthFailure) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
	if err := r.ParseForm(); err != nil || r.URL.RawQuery != "" {
		return nil, invalidRequest(
			"invalid_request",
			"send the parameters form-encoded in the body, not in the query",
		)
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 && k != "resource" {
			return nil, invalidRequest("invalid_request", "parameter %s appears twice", k)
		}
	}
	for _, k := range []string{"actor_token", "actor_token_type", "audience"} {
		if form.Has(k) {
			return nil, invalidRequest(
				"invalid_request",
				"parameter %s is not supported; name endpoints with resource",
				k,
			)
		}
	}
	if t := form.Get("requested_token_type"); t != "" && t != token.TokenTypeAccess {
		return nil, invalidRequest(
			"invalid_request",
			"requested_token_type must be %s",
			token.TokenTypeAccess,
		)
	}
	if c := form.Get("client_id"); c != "" && c != id.String() {
		return nil, &oauthFailure{http.StatusUnauthorized, "invalid_client",
			fmt.Sprintf("client_id %q is not the identity of the certificate, %s", c, id)}
	}
	return form, nil
}

// tokenClient authenticates the client of the token endpoint: a valid,
// unrevoked agent certificate.
func (e *Edge) tokenClient(
	w http.ResponseWriter,
	r *http.Request,
) (certs.Identity, *x509.Certificate, bool) {
	if r.TLS == nil {
		oauthError(
			w,
			http.StatusUnauthorized,
			"invalid_client",
			"an Airlock agent certificate is required",
		)
		return certs.Identity{}, nil, false
	}
	id, leaf, err := certs.PeerIdentity(*r.TLS, e.ca.TrustDomain(), certs.KindAgent)
	if err != nil {
		oauthError(
			w,
			http.StatusUnauthorized,
			"invalid_client",
			"an Airlock agent certificate is required",
		)
		return certs.Identity{}, nil, false
	}
	if rev, ok := e.revoked.check(id, leaf); ok {
		oauthError(w, http.StatusUnauthorized, "invalid_client", revokedMessage(id, rev))
		return certs.Identity{}, nil, false
	}
	// A connection may outlive the certificate that opened it.
	if e.now().After(leaf.NotAfter) {
		oauthError(
			w,
			http.StatusUnauthorized,
			"invalid_client",
			fmt.Sprintf("the certificate of %s has expired", id),
		)
		return certs.Identity{}, nil, false
	}
	return id, leaf, true
}

// oauthFailure is a refused token request.
type oauthFailure struct {
	status int
	code   string
	desc   string
}

func invalidRequest(code, format string, args ...any) *oauthFailure {
	status := http.StatusBadRequest
	return &oauthFailure{status, code, fmt.Sprintf(format, args...)}
}

// grantRequest is what a token request was granted, before signing.
type grantRequest struct {
	resources []string // endpoint URLs
	scope     token.Scope
	expires   time.Time // zero: the default lifetime
	lifetime  time.Duration
}

// readResources checks the RFC 8707 resource parameters: MCP endpoint
// URLs of this edge.
func (e *Edge) readResources(form url.Values) ([]string, *oauthFailure) {
	list := form["resource"]
	if len(list) == 0 {
		return nil, invalidRequest(
			"invalid_target",
			"resource is required: the MCP endpoint URL the token is for, such as %s",
			e.endpointURL("NAME"),
		)
	}
	var out []string
	for _, r := range list {
		if _, ok := e.resourceOf(r); !ok {
			return nil, invalidRequest(
				"invalid_target",
				"resource %q is not an MCP endpoint of this edge",
				r,
			)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// readScope parses the requested scope, or grants each resource whole.
// Every item must name one of the resources.
func (e *Edge) readScope(
	form url.Values,
	resources []string,
	fallback token.Scope,
) (token.Scope, *oauthFailure) {
	names := make([]string, len(resources))
	for i, r := range resources {
		names[i], _ = e.resourceOf(r)
	}
	raw := form.Get("scope")
	if raw == "" {
		if fallback != nil {
			return restrict(fallback, names), nil
		}
		var s token.Scope
		for _, n := range names {
			s = append(s, token.ScopeItem{Resource: n})
		}
		return s, nil
	}
	s, err := token.ParseScope(raw, func(n string) bool { return slices.Contains(names, n) })
	if err != nil {
		return nil, invalidRequest(
			"invalid_scope",
			"%v (the resources requested are %s)",
			err,
			strings.Join(names, ", "),
		)
	}
	return s, nil
}

// restrict keeps the items of s on the named resources.
func restrict(s token.Scope, names []string) token.Scope {
	var out token.Scope
	for _, item := range s {
		if slices.Contains(names, item.Resource) {
			out = append(out, item)
		}
	}
	return out
}

// readLifetime reads the optional expires_in (seconds): a shorter life.
func (e *Edge) readLifetime(form url.Values) (time.Duration, *oauthFailure) {
	raw := form.Get("expires_in")
	if raw == "" {
		return e.cfg.AccessTokenLifetime, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n <= 0 {
		return 0, invalidRequest(
			"invalid_request",
			"expires_in %q is not a positive number of seconds",
			raw,
		)
	}
	return min(time.Duration(n)*time.Second, e.cfg.AccessTokenLifetime), nil
}

func (e *Edge) clientCredentials(form url.Values) (grantRequest, *oauthFailure) {
	resources, err := e.readResources(form)
	if err != nil {
		return grantRequest{}, err
	}
	scope, err := e.readScope(form, resources, nil)
	if err != nil {
		return grantRequest{}, err
	}
	life, err := e.readLifetime(form)
	if err != nil {
		return grantRequest{}, err
	}
	return grantRequest{resources: resources, scope: scope, lifetime: life}, nil
}

// tokenExchange narrows a token of the same agent (RFC 8693 section
// 2.1): its resources, scope and life, never wider.
func (e *Edge) tokenExchange(
	form url.Values,
	leaf *x509.Certificate,
) (grantRequest, *oauthFailure) {
	if t := form.Get("subject_token_type"); t != token.TokenTypeAccess {
		return grantRequest{}, invalidRequest("invalid_request",
			"subject_token_type must be %s", token.TokenTypeAccess)
	}
	subject := form.Get("subject_token")
	if subject == "" {
		return grantRequest{}, invalidRequest("invalid_request", "subject_token is required")
	}
	resources, ferr := e.readResources(form)
	if ferr != nil {
		return grantRequest{}, ferr
	}
	// Verifying the subject token for each requested resource checks that
	// it was issued for all of them.
	var claims *token.AccessClaims
	for _, r := range resources {
		c, err := e.verifier.VerifyAccess(subject, r, leaf)
		if err != nil {
			e.logger.Debug("token exchange refused", logkey.Error, err)
			// RFC 8693 section 2.2.2: an invalid subject token is an
			// invalid request.
			return grantRequest{}, invalidRequest("invalid_request",
				"subject_token is not a valid token of this agent for %s", r)
		}
		claims = c
	}
	have, err := token.ParseScope(claims.Scope, nil)
	if err != nil {
		return grantRequest{}, invalidRequest(
			"invalid_grant",
			"subject_token has an unreadable scope",
		)
	}
	scope, ferr := e.readScope(form, resources, have)
	if ferr != nil {
		return grantRequest{}, ferr
	}
	if len(scope) == 0 || !have.Covers(scope) {
		return grantRequest{}, invalidRequest("invalid_scope",
			"scope %q is wider than the subject token's %q", scope.String(), have.String())
	}
	life, ferr := e.readLifetime(form)
	if ferr != nil {
		return grantRequest{}, ferr
	}
	return grantRequest{
		resources: resources,
		scope:     scope,
		lifetime:  life,
		expires:   claims.ExpiresAt.Time,
	}, nil
}

// issueToken signs and sends the access token of a granted request.
func (e *Edge) issueToken(
	w http.ResponseWriter,
	r *http.Request,
	id certs.Identity,
	leaf *x509.Certificate,
	g grantRequest,
) {
	now := e.now()
	exp := now.Add(g.lifetime)
	if !g.expires.IsZero() && g.expires.Before(exp) {
		exp = g.expires
	}
	var jti [16]byte
	rand.Read(jti[:])
	claims := &token.AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    e.issuer,
			Subject:   id.String(),
			Audience:  g.resources,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        hex.EncodeToString(jti[:]),
		},
		Scope:    g.scope.String(),
		ClientID: id.String(),
		Cnf:      &token.Confirmation{X5tS256: token.Thumbprint(leaf)},
	}
	raw, err := e.keys.Sign(token.TypAccess, claims)
	if err != nil {
		e.logger.Error("signing access token failed", logkey.Error, err)
		oauthError(
			w,
			http.StatusInternalServerError,
			"server_error",
			"the edge could not sign a token",
		)
		return
	}
	e.metrics.tokens.WithLabelValues("issued_" + grantLabel(r.PostForm.Get("grant_type"))).Inc()
	e.logger.InfoContext(r.Context(), "access token issued", logkey.AgentID, id.String(),
		logkey.TokenID, claims.ID, logkey.Scope, claims.Scope, logkey.Expires, exp)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	resp := token.Response{AccessToken: raw, TokenType: "Bearer",
		ExpiresIn: int(exp.Sub(now).Round(time.Second).Seconds()), Scope: claims.Scope}
	if r.PostForm.Get("grant_type") == token.GrantTokenExchange {
		resp.IssuedTokenType = token.TokenTypeAccess
	}
	json.NewEncoder(w).Encode(resp)
}

// serveJWKS publishes the signing keys.
func (e *Edge) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	data, err := e.keys.JWKS()
	if err != nil {
		http.Error(w, "no keys", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=60")
	w.Write(data)
}

// serveASMetadata is the authorization-server metadata (RFC 8414).
func (e *Edge) serveASMetadata(w http.ResponseWriter, _ *http.Request) {
	grants := []string{token.GrantClientCredentials, token.GrantTokenExchange}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                e.issuer,
		"token_endpoint":                        e.issuer + token.PathToken,
		"jwks_uri":                              e.issuer + token.PathJWKS,
		"grant_types_supported":                 grants,
		"token_endpoint_auth_methods_supported": []string{"tls_client_auth"},
		"tls_client_certificate_bound_access_tokens": true,
		"response_types_supported":                   []string{},
		"scopes_supported":                           e.scopesSupported(),
	})
}

func (e *Edge) scopesSupported() []string {
	var out []string
	for name := range e.resources {
		out = append(out, token.ScopeItem{Resource: name}.String())
	}
	slices.Sort(out)
	return out
}

// servePRMetadata is the protected-resource metadata of one MCP endpoint
// (RFC 9728 section 3).
func (e *Edge) servePRMetadata(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, token.PathPRMetadata+"/mcp/")
	if _, ok := e.resources[name]; !ok || r.URL.RawPath != "" {
		http.NotFound(w, r)
		return
	}
	scope := token.ScopeItem{Resource: name}.String()
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                                   e.endpointURL(name),
		"authorization_servers":                      []string{e.issuer},
		"bearer_methods_supported":                   []string{"header"},
		"scopes_supported":                           []string{scope},
		"tls_client_certificate_bound_access_tokens": true,
		"resource_name":                              "Airlock MCP resource " + name,
	})
}

// metadataURL is the protected-resource metadata URL of a resource.
func (e *Edge) metadataURL(resource string) string {
	return e.issuer + token.PathPRMetadata + "/mcp/" + resource
}

func grantLabel(grant string) string {
	if grant == token.GrantTokenExchange {
		return "token_exchange"
	}
	return grant
}
