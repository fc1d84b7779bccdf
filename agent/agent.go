// Package agent is Airlock on the host an AI agent runs on. It opens an
// agent profile (the folder `airlock agent enroll` made), keeps its
// certificate fresh, and sends MCP traffic to the edge with that
// certificate and a short-lived access token bound to it, fetched,
// refreshed and narrowed to each resource by itself. On top of that
// client it offers what existing MCP clients need: a stdio bridge
// ([Bridge]) for clients that launch servers as commands, and a loopback
// proxy ([Proxy]) for clients that speak Streamable HTTP but cannot
// present a certificate.
//
// The agent's key never leaves its profile, and nothing here stores a
// token: each lives in memory for a few minutes.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/token"
)

// Options tune [Open].
type Options struct {
	// Scope narrows every access token further than its resource, e.g.
	// "mcp:demo:tools/call:read_file". Empty asks for the whole resource.
	Scope string
	// Logger receives renewals and failures; nil discards.
	Logger *slog.Logger
	// Renew, when false, leaves certificate renewal to someone else (a
	// long-running bridge or proxy renews; a one-shot command renews only
	// a certificate already due, in Open).
	Renew bool
}

// Agent is an open agent profile. It is safe for concurrent use.
type Agent struct {
	holder  *enroll.Holder
	client  *http.Client
	stop    context.CancelFunc
	done    chan struct{}
	expired chan struct{} // closed when renewal gave up: the certificate expired
}

// Open loads the agent profile in dir. A certificate that is already due
// is renewed at once (so that short commands keep it fresh too); with
// opts.Renew, it is renewed in the background until [Agent.Close]. An
// expired certificate is an error: the agent must enroll again.
func Open(ctx context.Context, dir string, opts Options) (*Agent, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, renewed, err := enroll.LoadCurrent(ctx, dir)
	if errors.Is(err, enroll.ErrExpired) {
		return nil, fmt.Errorf("agent profile %s: %w", dir, err)
	}
	if err != nil {
		return nil, err
	}
	if renewed {
		logger.Info("renewed the agent certificate",
			logkey.CertNotAfter, h.Credential().Leaf().NotAfter)
	}
	base := h.HTTPClient().Transport
	tokens := token.NewTransport(base, func() string {
		return token.Thumbprint(h.Credential().Leaf())
	})
	tokens.Scope = opts.Scope
	a := &Agent{holder: h, client: &http.Client{Transport: tokens}, done: make(chan struct{}),
		expired: make(chan struct{})}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	if !opts.Renew {
		close(a.done)
		return a, nil
	}
	go func() {
		defer close(a.done)
		// The renewer logs its failures; an error means it gave up.
		if err := (&enroll.Renewer{Holder: h, Logger: logger}).Run(runCtx); err != nil {
			close(a.expired)
		}
	}()
	return a, nil
}

// Expired is closed when the certificate expired and could not be
// renewed: nothing the agent sends is accepted any more, and the profile
// must enroll again.
func (a *Agent) Expired() <-chan struct{} { return a.expired }

// Close stops the background renewal.
func (a *Agent) Close() {
	a.stop()
	<-a.done
}

// Holder returns the agent's credential holder.
func (a *Agent) Holder() *enroll.Holder { return a.holder }

// HTTPClient returns a client that presents the agent's current
// certificate and adds an access token for the MCP endpoint each request
// goes to. It has no timeout of its own: use request contexts.
func (a *Agent) HTTPClient() *http.Client { return a.client }

// Endpoint returns the MCP endpoint URL of resource: the name of a
// resource on the profile's edge, or a whole https URL, returned as it is.
func (a *Agent) Endpoint(resource string) (string, error) {
	if !strings.Contains(resource, "://") {
		return strings.TrimRight(a.holder.EdgeURL(), "/") + "/mcp/" + resource, nil
	}
	u, err := url.Parse(resource)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("resource %q: want a resource name or an https://host/mcp/NAME URL "+
			"(the agent's certificate and token never travel in clear)", resource)
	}
	return resource, nil
}
