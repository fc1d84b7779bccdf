package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
	"weak"

	"github.com/airlockhq/airlock/certs"
)

// Holder is an enrolled agent or connector: its identity, its current
// credential and trust bundle, and the folder that keeps them. [Enroll]
// and [Load] make one; [Holder.Renew] and [Holder.RefreshBundle] update
// it, on disk first and then in memory. It is safe for concurrent use.
//
// Values it returns (credentials, certificates, pools) are replaced,
// never modified, by an update; callers must not modify them either.
type Holder struct {
	dir     string
	edgeURL string
	id      certs.Identity
	timeout time.Duration

	// update serializes updates, so that the files and the memory are
	// replaced in the same order.
	update sync.Mutex

	// mu guards the fields below.
	mu         sync.Mutex
	cred       *certs.Credential
	tlsCert    *tls.Certificate
	bundle     []*x509.Certificate
	roots      *x509.CertPool
	hooks      []hook
	nextHook   int
	transports []weak.Pointer[rotatingTransport]
}

// hook is a function registered with [Holder.OnChange].
type hook struct {
	id int
	fn func()
}

func newHolder(
	dir, edgeURL string,
	id certs.Identity,
	cred *certs.Credential,
	bundle []*x509.Certificate,
) *Holder {
	h := &Holder{dir: dir, edgeURL: edgeURL, id: id, timeout: DefaultHTTPClientTimeout}
	h.setLocked(cred, bundle)
	return h
}

// setLocked swaps in cred and bundle; nil keeps the current one. It
// expects mu held, or h not yet shared.
func (h *Holder) setLocked(cred *certs.Credential, bundle []*x509.Certificate) {
	if cred != nil {
		tc := cred.TLSCertificate()
		h.cred, h.tlsCert = cred, &tc
	}
	if bundle != nil {
		h.bundle, h.roots = bundle, newPool(bundle)
	}
}

// Identity returns the identity the holder's certificate asserts; it
// never changes.
func (h *Holder) Identity() certs.Identity { return h.id }

// EdgeURL returns the address of the edge the holder enrolled with,
// https://host:port.
func (h *Holder) EdgeURL() string { return h.edgeURL }

// Dir returns the folder that keeps the credential.
func (h *Holder) Dir() string { return h.dir }

// Credential returns the current credential.
func (h *Holder) Credential() *certs.Credential {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cred
}

// Roots returns a new pool of the current trust bundle, the caller's.
func (h *Holder) Roots() *x509.CertPool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.roots.Clone()
}

// Bundle returns the current trust bundle: every root the deployment
// trusts. The slice is the caller's.
func (h *Holder) Bundle() []*x509.Certificate {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bundle)
}

// ClientCertificate returns the current certificate; it fits
// [tls.Config.GetClientCertificate], so that every handshake presents the
// newest one.
func (h *Holder) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tlsCert, nil
}

// TLSConfig returns a new client config for one connection to serverName:
// TLS 1.3 (RFC 8446), the current trust bundle as roots, and the current
// certificate, asked for at handshake time. Build one per dial, so that
// an updated bundle takes effect.
func (h *Holder) TLSConfig(serverName string, nextProtos ...string) *tls.Config {
	h.mu.Lock()
	roots := h.roots
	h.mu.Unlock()
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		ServerName:           serverName,
		RootCAs:              roots,
		GetClientCertificate: h.ClientCertificate,
		NextProtos:           nextProtos,
	}
}

// tlsConfigHTTP returns a config for an HTTPS connection to host.
func (h *Holder) tlsConfigHTTP(host string) *tls.Config {
	return h.TLSConfig(host, "h2", "http/1.1")
}

// HTTPClient returns a new client that presents the holder's certificate
// over HTTP/2 or HTTP/1.1, with a fresh [Holder.TLSConfig] for each
// connection. After each change of the credential or the bundle the
// client sends new requests over new connections, made with the new
// credential, and lets requests in flight finish on the old ones, which
// it then closes: a busy HTTP/2 connection is never idle, so closing idle
// connections alone would keep the old certificate in use until it
// expired. The holder keeps only a weak reference: a client dropped by
// its caller is collected as usual. The client has no timeout of its own:
// use request contexts.
func (h *Holder) HTTPClient() *http.Client {
	t := newRotatingTransport(func() *http.Transport { return newTransport(h.tlsConfigHTTP) })
	h.mu.Lock()
	h.transports = slices.DeleteFunc(h.transports, func(p weak.Pointer[rotatingTransport]) bool {
		return p.Value() == nil
	})
	h.transports = append(h.transports, weak.Make(t))
	h.mu.Unlock()
	return &http.Client{Transport: t}
}

// OnChange registers fn to be called after each change of the credential
// or the trust bundle ([Holder.Renew], or a [Holder.RefreshBundle] that
// found a new bundle), once the new one is on disk and in memory. Hooks
// run in the goroutine that made the change, in the order registered,
// without holder locks held; when updates race, hooks of two updates may
// run at once. fn should return quickly (close idle connections, signal
// a reconnect). The returned func removes fn.
func (h *Holder) OnChange(fn func()) (remove func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextHook++
	id := h.nextHook
	h.hooks = append(h.hooks, hook{id: id, fn: fn})
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.hooks = slices.DeleteFunc(h.hooks, func(k hook) bool { return k.id == id })
	}
}

// replace writes what changed to the folder, swaps it in and calls the
// change hooks. A nil cred keeps the current credential; a nil bundle, or
// one equal to the current, keeps the current bundle. Nothing changed
// means nothing written and no hooks called.
func (h *Holder) replace(cred *certs.Credential, bundle []*x509.Certificate) error {
	h.update.Lock()
	if bundle != nil && sameCertificates(bundle, h.Bundle()) {
		bundle = nil
	}
	err := h.write(cred, bundle)
	if err == nil {
		h.mu.Lock()
		h.setLocked(cred, bundle)
		h.mu.Unlock()
	}
	h.update.Unlock()
	if err != nil || (cred == nil && bundle == nil) {
		return err
	}
	h.changed()
	return nil
}

// write writes the bundle first: during a CA rotation it holds the roots
// of both the old and the new certificate.
func (h *Holder) write(cred *certs.Credential, bundle []*x509.Certificate) error {
	if bundle != nil {
		if err := writeFile(BundleFile(h.dir), encodeCertificates(bundle), 0o644); err != nil {
			return err
		}
	}
	if cred != nil {
		return writeIdentity(h.dir, cred)
	}
	return nil
}

// changed moves the clients handed out to new connections and calls the
// hooks.
func (h *Holder) changed() {
	h.mu.Lock()
	var fns []func()
	for _, p := range h.transports {
		if t := p.Value(); t != nil {
			fns = append(fns, t.rotate)
		}
	}
	for _, k := range h.hooks {
		fns = append(fns, k.fn)
	}
	h.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func sameCertificates(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool {
		return bytes.Equal(x.Raw, y.Raw)
	})
}

// Renew gets a new certificate for the holder's identity, for a new key
// made on this host, by presenting the current one over mutual TLS. The
// answer is checked as in [Enroll] and must assert the same identity. On
// success the identity and bundle files are replaced, the holder uses the
// new credential, and the change hooks run ([Holder.OnChange]). A refusal
// by the edge (say [CodeRevoked]) comes back wrapped as a *[RefusedError].
func (h *Holder) Renew(ctx context.Context) error {
	key, csr, err := newKeyAndCSR(h.id.Name)
	if err != nil {
		return fmt.Errorf("renewing %s: %w", h.id, err)
	}
	client := newClient(h.timeout, h.tlsConfigHTTP)
	defer client.CloseIdleConnections()
	resp, err := exchange(ctx, client, h.edgeURL+PathRenew, Request{CSR: csr})
	if err != nil {
		return fmt.Errorf("renewing %s at %s: %w", h.id, h.edgeURL, err)
	}
	got, err := checkAnswer(resp, key, h.Bundle(), h.id)
	if err != nil {
		return fmt.Errorf("renewing %s at %s: %w", h.id, h.edgeURL, err)
	}
	if err := h.replace(got.cred, got.bundle); err != nil {
		return fmt.Errorf("renewing %s: %w", h.id, err)
	}
	return nil
}

// RefreshBundle gets the edge's current trust bundle over TLS verified
// against the current one. A new bundle replaces the bundle file and the
// one in memory, and the change hooks run; an unchanged one changes
// nothing. On error the current bundle stays.
func (h *Holder) RefreshBundle(ctx context.Context) error {
	client := newClient(h.timeout, h.tlsConfigHTTP)
	defer client.CloseIdleConnections()
	bundle, err := fetchBundle(ctx, client, h.edgeURL+PathTrustBundle)
	if err != nil {
		return fmt.Errorf("refreshing trust bundle from %s: %w", h.edgeURL, err)
	}
	if err := h.replace(nil, bundle); err != nil {
		return fmt.Errorf("refreshing trust bundle: %w", err)
	}
	return nil
}
