package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/logkey"
)

// servingCert is the edge's own certificate for the front door and the
// tunnel. The edge holds the CA, so it mints it in process and renews it
// at two thirds of its lifetime; it is never written to disk.
type servingCert struct {
	ca     *certs.Authority
	name   string
	life   time.Duration
	dns    []string
	ips    []net.IP
	logger *slog.Logger

	// mu guards cur.
	mu  sync.RWMutex
	cur *tls.Certificate
}

func newServingCert(ca *certs.Authority, cfg Config, logger *slog.Logger) *servingCert {
	s := &servingCert{ca: ca, name: cfg.Name, life: cfg.CertLifetime, logger: logger}
	for _, h := range cfg.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			s.ips = append(s.ips, ip)
		} else {
			s.dns = append(s.dns, h)
		}
	}
	return s
}

func (s *servingCert) start(ctx context.Context) error {
	return s.renew(ctx)
}

func (s *servingCert) renew(ctx context.Context) error {
	cred, err := s.ca.Issue(ctx, certs.SignRequest{
		Kind: certs.KindEdge, Name: s.name, Lifetime: s.life,
		DNSNames: s.dns, IPAddresses: s.ips,
	})
	if err != nil {
		return fmt.Errorf("minting edge serving certificate: %w", err)
	}
	c := cred.TLSCertificate()
	s.mu.Lock()
	s.cur = &c
	s.mu.Unlock()
	s.logger.Info("serving certificate issued",
		logkey.CertSerial, cred.Leaf().SerialNumber.String(),
		logkey.CertFingerprint, certs.Fingerprint(cred.Leaf()),
		logkey.CertNotAfter, cred.Leaf().NotAfter)
	return nil
}

func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur, nil
}

func (s *servingCert) renewLoop(ctx context.Context) {
	for {
		s.mu.RLock()
		leaf := s.cur.Leaf
		s.mu.RUnlock()
		due := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
		wait := time.Until(due)
		if wait < time.Minute {
			wait = time.Minute
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := s.renew(ctx); err != nil {
			s.logger.Error("renewing serving certificate failed",
				logkey.Error, err, "expires_in", time.Until(leaf.NotAfter).Round(time.Second))
		}
	}
}
