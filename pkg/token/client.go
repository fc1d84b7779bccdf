package token

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Paths of the edge's OAuth endpoints and the OAuth names they use.
const (
	// PathToken is the edge's token endpoint.
	PathToken = "/oauth/token"
	// PathJWKS publishes the edge's signing keys.
	PathJWKS = "/.well-known/jwks.json"
	// PathASMetadata is the authorization-server metadata (RFC 8414).
	PathASMetadata = "/.well-known/oauth-authorization-server"
	// PathPRMetadata prefixes the protected-resource metadata of each MCP
	// endpoint (RFC 9728 section 3.1): PathPRMetadata + "/mcp/<name>".
	PathPRMetadata = "/.well-known/oauth-protected-resource"

	// GrantClientCredentials is the client credentials grant (RFC 6749
	// section 4.4).
	GrantClientCredentials = "client_credentials"
	// GrantTokenExchange is token exchange (RFC 8693 section 2.1).
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccess is the token type of access tokens (RFC 8693
	// section 3).
	TokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"
)

// Response is a successful token endpoint answer (RFC 6749 section 5.1,
// RFC 8693 section 2.2.1).
type Response struct {
	// AccessToken is the JWT.
	AccessToken string `json:"access_token"`
	// TokenType is "Bearer": the token goes in the Authorization header,
	// over a connection with the certificate it is bound to.
	TokenType string `json:"token_type"`
	// ExpiresIn is the lifetime in seconds.
	ExpiresIn int `json:"expires_in"`
	// Scope is the granted scope (see [Scope]).
	Scope string `json:"scope"`
	// IssuedTokenType answers a token exchange: always an access token.
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// ErrorResponse is a token endpoint refusal (RFC 6749 section 5.2).
type ErrorResponse struct {
	// Error is the RFC 6749 error code, such as invalid_scope.
	Error string `json:"error"`
	// Description says what was wrong, for a person.
	Description string `json:"error_description,omitempty"`
}

// FetchError is a token the endpoint would not give.
type FetchError struct {
	// Status is the HTTP status of the answer.
	Status int
	// ErrorResponse is the endpoint's answer; a body that was not one is
	// kept as the Description of code unexpected_answer.
	ErrorResponse
}

func (e *FetchError) Error() string {
	return fmt.Sprintf(
		"token endpoint refused (%d %s): %s",
		e.Status,
		e.ErrorResponse.Error,
		e.Description,
	)
}

// Request asks the token endpoint for a token.
type Request struct {
	// Resources are the MCP endpoint URLs the token is for (RFC 8707).
	Resources []string
	// Scope narrows the token; "" asks for every resource whole.
	Scope string
	// SubjectToken, when set, makes this a token exchange (RFC 8693)
	// that narrows it.
	SubjectToken string
	// Lifetime, when set, asks for a shorter life than the default.
	Lifetime time.Duration
}

// Fetch asks the token endpoint at tokenURL for a token, authenticating
// with the client certificate of client (RFC 8705 section 2).
func Fetch(
	ctx context.Context,
	client *http.Client,
	tokenURL string,
	req Request,
) (*Response, error) {
	form := url.Values{"resource": req.Resources}
	if req.Scope != "" {
		form.Set("scope", req.Scope)
	}
	form.Set("grant_type", GrantClientCredentials)
	if req.SubjectToken != "" {
		form.Set("grant_type", GrantTokenExchange)
		form.Set("subject_token", req.SubjectToken)
		form.Set("subject_token_type", TokenTypeAccess)
	}
	if req.Lifetime > 0 {
		form.Set("expires_in", fmt.Sprint(int(req.Lifetime.Seconds())))
	}
	body := strings.NewReader(form.Encode())
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, body)
	if err != nil {
		return nil, fmt.Errorf("fetching token: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("fetching token: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetching token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		fe := &FetchError{Status: resp.StatusCode}
		if json.Unmarshal(data, &fe.ErrorResponse) != nil || fe.ErrorResponse.Error == "" {
			fe.ErrorResponse = ErrorResponse{
				Error:       "unexpected_answer",
				Description: string(bytes.TrimSpace(data)),
			}
		}
		return nil, fe
	}
	var out Response
	if err := json.Unmarshal(data, &out); err != nil || out.AccessToken == "" {
		return nil, fmt.Errorf("fetching token: unreadable answer from %s", tokenURL)
	}
	return &out, nil
}

// Transport adds a certificate-bound access token to every request to an
// Airlock MCP endpoint, fetching one per endpoint and again before it
// expires or when the client certificate changes. A request refused with
// invalid_token before it was forwarded is sent once more with a fresh
// token. It is safe for concurrent use.
type Transport struct {
	// Base sends the requests; it must present the agent's certificate.
	Base http.RoundTripper
	// Client fetches tokens; it must present the same certificate.
	Client *http.Client
	// Scope, if set, narrows every token.
	Scope string
	// Binding returns the thumbprint of the certificate presented now, so
	// that tokens bound to a replaced certificate are dropped.
	Binding func() string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// mu guards cache.
	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	token   string
	binding string
	refresh time.Time
}

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resource, tokenURL, ok := endpointOf(req.URL)
	if !ok {
		return t.Base.RoundTrip(req)
	}
	tok, err := t.token(req.Context(), resource, tokenURL, false)
	if err != nil {
		return nil, err
	}
	resp, err := t.Base.RoundTrip(withToken(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		return resp, err
	}
	// The edge refused the token before forwarding anything, so sending
	// the request again cannot run it twice. A request whose body cannot
	// be read again gets the refusal, and the next one a fresh token.
	t.forget(resource)
	var body io.ReadCloser
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		body = req.Body
	case req.GetBody != nil:
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	default:
		return resp, nil
	}
	resp.Body.Close()
	if tok, err = t.token(req.Context(), resource, tokenURL, true); err != nil {
		return nil, err
	}
	again := withToken(req, tok)
	again.Body = body
	return t.Base.RoundTrip(again)
}

// CloseIdleConnections closes the idle connections of Base and of the
// token client, when they have any to close.
func (t *Transport) CloseIdleConnections() {
	type idleCloser interface{ CloseIdleConnections() }
	if c, ok := t.Base.(idleCloser); ok {
		c.CloseIdleConnections()
	}
	if t.Client != nil {
		t.Client.CloseIdleConnections()
	}
}

// forget drops the cached token of resource.
func (t *Transport) forget(resource string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cache, resource)
}

func withToken(req *http.Request, tok string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// endpointOf returns the MCP endpoint URL a request goes to, and the
// token endpoint of the same edge.
func endpointOf(u *url.URL) (resource, tokenURL string, ok bool) {
	name, found := strings.CutPrefix(u.Path, "/mcp/")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	base := u.Scheme + "://" + u.Host
	return base + u.Path, base + PathToken, true
}

func (t *Transport) token(
	ctx context.Context,
	resource, tokenURL string,
	fresh bool,
) (string, error) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	binding := ""
	if t.Binding != nil {
		binding = t.Binding()
	}
	t.mu.Lock()
	c, ok := t.cache[resource]
	t.mu.Unlock()
	if ok && !fresh && c.binding == binding && now().Before(c.refresh) {
		return c.token, nil
	}

	req := Request{Resources: []string{resource}, Scope: t.Scope}
	resp, err := Fetch(ctx, t.Client, tokenURL, req)
	if err != nil {
		return "", err
	}
	// Refresh at about four fifths of the lifetime, so that a token never
	// expires on its way.
	life := time.Duration(resp.ExpiresIn) * time.Second
	c = cached{token: resp.AccessToken, binding: binding, refresh: now().Add(life * 4 / 5)}
	t.mu.Lock()
	if t.cache == nil {
		t.cache = map[string]cached{}
	}
	t.cache[resource] = c
	t.mu.Unlock()
	return c.token, nil
}

// NewTransport returns a Transport that sends requests and fetches tokens
// through base, which must present the agent's certificate. binding, if
// not nil, returns the thumbprint of that certificate (see
// [Transport.Binding]).
func NewTransport(base http.RoundTripper, binding func() string) *Transport {
	return &Transport{Base: base, Client: &http.Client{Transport: base}, Binding: binding}
}
