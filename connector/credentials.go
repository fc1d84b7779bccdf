package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/logkey"
)

// credentials is where the connector's certificate comes from: files it
// is given, which it never renews, or a credential it enrolled for and
// renews itself ([enroll.Holder]).
type credentials interface {
	TLSConfig(serverName string, nextProtos ...string) *tls.Config
	Identity() certs.Identity
}

var _ credentials = (*enroll.Holder)(nil)

// fileCredentials are a certificate, key and trust bundle from files.
type fileCredentials struct {
	cert  tls.Certificate
	roots *x509.CertPool
	id    certs.Identity
}

func (f *fileCredentials) Identity() certs.Identity { return f.id }

func (f *fileCredentials) TLSConfig(serverName string, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		ServerName:   serverName,
		RootCAs:      f.roots,
		Certificates: []tls.Certificate{f.cert},
		NextProtos:   nextProtos,
	}
}

// loadCredentials opens what the config names: the enrolled credential in
// data_dir, or cert_file, key_file and ca_file.
func loadCredentials(cfg Config) (credentials, *enroll.Holder, error) {
	if cfg.DataDir != "" {
		h, err := enroll.Load(cfg.DataDir)
		if err != nil {
			return nil, nil, fmt.Errorf("loading connector credential: %w", err)
		}
		return h, h, nil
	}
	cred, err := certs.LoadCredential(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("loading connector credential: %w", err)
	}
	id, err := certs.IdentityOf(cred.Leaf())
	if err != nil {
		return nil, nil, fmt.Errorf("reading connector certificate %s: %w", cfg.CertFile, err)
	}
	roots, err := certs.ReadPool(cfg.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("loading trusted roots: %w", err)
	}
	return &fileCredentials{cert: cred.TLSCertificate(), roots: roots, id: id}, nil, nil
}

// Renewals returns how often the connector's credential has changed
// since it started: renewals and trust-bundle updates.
func (c *Connector) Renewals() int64 { return c.renewals.Load() }

// Enrolled reports whether data_dir already holds a credential.
func Enrolled(cfg Config) bool {
	_, err := os.Stat(enroll.IdentityFile(cfg.DataDir))
	return err == nil
}

// Enroll redeems a join token for the connector's first credential,
// made on this host and kept in cfg.DataDir. The edge is reached at
// cfg.EnrollURL.
func Enroll(ctx context.Context, cfg Config, token string, logger *slog.Logger) error {
	if cfg.DataDir == "" {
		return errors.New("enrolling needs data_dir, the folder that keeps the credential")
	}
	h, err := enroll.Enroll(ctx, enroll.Options{
		EdgeURL: cfg.EnrollURL,
		Token:   token,
		Kind:    certs.KindConnector,
		Name:    cfg.Name,
		Dir:     cfg.DataDir,
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	if logger != nil {
		logger.InfoContext(ctx, "connector enrolled", logkey.Identity, h.Identity().String(),
			logkey.CertNotAfter, h.Credential().Leaf().NotAfter)
	}
	return nil
}

// defaultEnrollURL is the front door on the first edge's host and port:
// the edge serves HTTPS on TCP where it takes tunnels on UDP.
func defaultEnrollURL(edges []string) string {
	if len(edges) == 0 {
		return ""
	}
	host, port, err := net.SplitHostPort(edges[0])
	if err != nil {
		return ""
	}
	return "https://" + net.JoinHostPort(host, port)
}

// broadcast wakes every waiter once per fire. It is safe for concurrent
// use.
type broadcast struct {
	// mu guards ch.
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

// wait returns a channel that is closed at the next fire.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

// startRenewal renews an enrolled credential in the background and wakes
// the tunnels after each renewal. The returned context ends when the
// certificate has expired for good; expired then says why.
func (c *Connector) startRenewal(ctx context.Context) (context.Context, func() error) {
	if c.holder == nil {
		return ctx, func() error { return nil }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	c.holder.OnChange(func() {
		c.renewals.Add(1)
		c.renewed.fire()
	})
	r := &enroll.Renewer{Holder: c.holder, Logger: c.logger}
	go func() {
		if err := r.Run(ctx); err != nil {
			cancel(err)
		}
	}()
	return ctx, func() error {
		if err := context.Cause(ctx); errors.Is(err, enroll.ErrExpired) {
			return err
		}
		return nil
	}
}
