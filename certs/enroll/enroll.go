package enroll

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/logkey"
)

// Options says how to [Enroll].
type Options struct {
	// EdgeURL is https://host:port of the edge's front door. Required.
	EdgeURL string
	// Token is the join token an admin created. Required.
	Token string
	// Kind is what the holder expects to become: [certs.KindAgent] or
	// [certs.KindConnector]. Required.
	Kind certs.Kind
	// Name is the name the holder expects; "" accepts the token's name.
	Name string
	// Dir is the folder that keeps the credential; it is created (0700)
	// if missing, and files of an earlier enrollment there are replaced.
	// Required.
	Dir string
	// CAFile, if set, is a PEM bundle of roots to trust instead of
	// checking the edge's trust bundle against the token's pin.
	CAFile string
	// Logger receives an Info record on success; nil discards.
	Logger *slog.Logger
	// HTTPClientTimeout bounds each request to the edge, here and in the
	// returned Holder's Renew and RefreshBundle. Zero means
	// [DefaultHTTPClientTimeout].
	HTTPClientTimeout time.Duration
}

// validate reports every problem with the options at once.
func (o *Options) validate() error {
	var errs []error
	if _, err := parseEdgeURL(o.EdgeURL); err != nil {
		errs = append(errs, err)
	}
	if o.Token == "" {
		errs = append(errs, errors.New("no join token"))
	}
	if o.Kind != certs.KindAgent && o.Kind != certs.KindConnector {
		errs = append(errs, fmt.Errorf("cannot enroll as kind %q (want agent or connector)", o.Kind))
	}
	if o.Name != "" && !certs.ValidName(o.Name) {
		errs = append(errs, fmt.Errorf("invalid name %q: use 1 to 64 lowercase letters, digits, '.', '-' or '_'", o.Name))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no folder for the credential"))
	}
	return errors.Join(errs...)
}

// Enroll redeems a join token at the edge for a certificate and keeps it
// in opts.Dir (see [IdentityFile], [BundleFile], [EnrollmentFile]).
//
// The key is made on this host (ECDSA P-256) and never leaves it. Before
// it sends the token, Enroll authenticates the edge: with opts.CAFile
// against that bundle, otherwise against the root whose pin the token
// carries. It then checks that the certificate is for its key, verifies
// to the trust bundle, and asserts an identity of opts.Kind (and
// opts.Name if set). A refusal by the edge comes back wrapped as a
// *[RefusedError]; a malformed token as [ErrMalformedToken].
func Enroll(ctx context.Context, opts Options) (*Holder, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	edge, _ := parseEdgeURL(opts.EdgeURL)
	h, err := enroll(ctx, edge, opts)
	if err != nil {
		return nil, fmt.Errorf("enrolling with %s: %w", edge, err)
	}
	leaf := h.Credential().Leaf()
	logger(opts.Logger).InfoContext(ctx, "enrolled",
		logkey.Identity, h.Identity().String(), logkey.Edge, edge,
		logkey.CertSerial, leaf.SerialNumber.String(),
		logkey.CertFingerprint, certs.Fingerprint(leaf),
		logkey.CertNotAfter, leaf.NotAfter)
	return h, nil
}

// enroll is [Enroll] after the options passed validation.
func enroll(ctx context.Context, edge string, opts Options) (*Holder, error) {
	tok, err := ParseJoinToken(opts.Token)
	if err != nil {
		return nil, err
	}
	timeout := cmp.Or(opts.HTTPClientTimeout, DefaultHTTPClientTimeout)
	trusted, err := enrollTrust(ctx, edge, tok, opts.CAFile, timeout)
	if err != nil {
		return nil, err
	}

	key, csr, err := newKeyAndCSR(opts.Name)
	if err != nil {
		return nil, err
	}
	client := newClient(timeout, verifiedTLS(newPool(trusted)))
	defer client.CloseIdleConnections()
	req := Request{Token: tok.String(), Kind: string(opts.Kind), Name: opts.Name, CSR: csr}
	resp, err := exchange(ctx, client, edge+PathEnroll, req)
	if err != nil {
		return nil, err
	}

	got, err := checkAnswer(resp, key, trusted, certs.Identity{Kind: opts.Kind, Name: opts.Name})
	if err != nil {
		return nil, err
	}
	rec := enrollment{EdgeURL: edge, Identity: got.id.String()}
	if err := writeEnrollment(opts.Dir, rec, got.cred, got.bundle); err != nil {
		return nil, err
	}
	h := newHolder(opts.Dir, edge, got.id, got.cred, got.bundle)
	h.timeout = timeout
	return h, nil
}

// enrollTrust returns the roots that authenticate the edge before we
// send it the token: those of caFile, or else the roots of the edge's
// trust bundle that match the token's pin.
func enrollTrust(
	ctx context.Context,
	edge string,
	tok JoinToken,
	caFile string,
	timeout time.Duration,
) ([]*x509.Certificate, error) {
	if caFile != "" {
		return certs.ReadCertificates(caFile)
	}

	// We trust nothing yet, so this one request skips verification: the
	// pin in the join token authenticates what it returns instead.
	client := newClient(timeout, func(host string) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: host, InsecureSkipVerify: true}
	})
	defer client.CloseIdleConnections()
	bundle, err := fetchBundle(ctx, client, edge+PathTrustBundle)
	if err != nil {
		return nil, fmt.Errorf("fetching trust bundle: %w", err)
	}

	// Only the pinned root is authentic: anyone on the path could have
	// added roots of their own to an unverified bundle. The full bundle
	// comes with the answer, over TLS verified against the pinned root.
	var pinned []*x509.Certificate
	for _, c := range bundle {
		if Pin(c.Raw) == tok.Pin {
			pinned = append(pinned, c)
		}
	}
	if len(pinned) == 0 {
		return nil, fmt.Errorf(
			"trust bundle from %s does not match the join token's pin: refusing to enroll (is this the right edge?)",
			edge)
	}
	return pinned, nil
}

// logger returns l, or a logger that discards when l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
