package enroll

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/logkey"
)

// ErrExpired is returned by [Renewer.Run] once the certificate has
// expired without a successful renewal: only a new enrollment helps.
var ErrExpired = errors.New("certificate expired: enroll again with a new join token")

// DefaultBundleRefresh is how often a [Renewer] refreshes the trust
// bundle when [Renewer.BundleRefresh] is zero.
const DefaultBundleRefresh = 10 * time.Minute

// Bounds on the delay between failed renewals.
const (
	minRetry      = time.Second
	maxRetry      = time.Minute
	minRetryFloor = 500 * time.Millisecond
)

// RenewAt returns when to renew leaf: at two thirds of its lifetime,
// moved by jitter (in [-1, 1], clamped) by up to 5% of the lifetime, and
// never before it was issued nor after it expires. The lifetime counts
// from the real issue time, NotBefore plus [certs.Backdate].
func RenewAt(leaf *x509.Certificate, jitter float64) time.Time {
	issued := leaf.NotBefore.Add(certs.Backdate)
	life := leaf.NotAfter.Sub(issued)
	if life <= 0 {
		return leaf.NotAfter
	}
	jitter = min(max(jitter, -1), 1)
	shift := time.Duration(jitter * 0.05 * float64(life))
	at := issued.Add(life*2/3 + shift)
	if at.After(leaf.NotAfter) {
		return leaf.NotAfter
	}
	if at.Before(issued) {
		return issued
	}
	return at
}

// Renewer keeps a Holder's certificate fresh: it renews at about two
// thirds of each certificate's lifetime ([RenewAt]), retries failures
// until the certificate expires, and refreshes the trust bundle in
// between. The zero value of each field but Holder means its default.
type Renewer struct {
	// Holder is the credential to keep fresh. Required.
	Holder *Holder
	// Logger receives renewals (Info), failures (Warn) and expiry
	// (Error); nil discards.
	Logger *slog.Logger
	// BundleRefresh is how often the trust bundle is refreshed between
	// renewals; zero means [DefaultBundleRefresh], negative never.
	BundleRefresh time.Duration
	// Rand returns numbers in [0, 1) that jitter the renewal time and the
	// retry delays; nil means math/rand/v2's Float64.
	Rand func() float64

	// renew and refresh default to the Holder's Renew and RefreshBundle;
	// tests replace them.
	renew   func(ctx context.Context) error
	refresh func(ctx context.Context) error
}

// loop is a running [Renewer], its defaults filled in.
type loop struct {
	holder      *Holder
	logger      *slog.Logger
	every       time.Duration
	rand        func() float64
	renew       func(ctx context.Context) error
	refresh     func(ctx context.Context) error
	nextRefresh time.Time
}

// Run renews until ctx is done, then returns nil. It returns [ErrExpired]
// once the certificate has expired and renewing failed until then.
// Failures before that are logged and retried, never returned.
func (r *Renewer) Run(ctx context.Context) error {
	l := r.start()
	for renewed := false; ; renewed = true {
		l.nextRefresh = time.Now().Add(l.every)
		if !l.waitRefreshing(ctx, l.renewTime(ctx, renewed)) {
			return nil
		}
		if err := l.renewRetrying(ctx); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// renewTime returns when to renew the current certificate. One that is
// due as soon as it was renewed (the edge's clock far behind ours, say)
// waits as after a failure, so that we never renew in a busy loop.
func (l *loop) renewTime(ctx context.Context, renewed bool) time.Time {
	leaf := l.holder.Credential().Leaf()
	at := RenewAt(leaf, 2*l.rand()-1)
	now := time.Now()
	if !renewed || at.After(now) {
		return at
	}
	left := leaf.NotAfter.Sub(now)
	l.logger.WarnContext(ctx, "renewed certificate is already due for renewal",
		logkey.CertNotAfter, leaf.NotAfter, logkey.TimeLeft, left.Round(time.Second))
	return now.Add(min(retryDelay(left, l.rand()), max(left, 0)))
}

// start returns the loop of r with its defaults filled in.
func (r *Renewer) start() *loop {
	log := logger(r.Logger).With(
		logkey.Component, "certs.renewer",
		logkey.Identity, r.Holder.Identity().String(),
	)
	l := &loop{
		holder:  r.Holder,
		logger:  log,
		every:   cmp.Or(r.BundleRefresh, DefaultBundleRefresh),
		rand:    r.Rand,
		renew:   r.renew,
		refresh: r.refresh,
	}
	if l.rand == nil {
		l.rand = rand.Float64
	}
	if l.renew == nil {
		l.renew = r.Holder.Renew
	}
	if l.refresh == nil {
		l.refresh = r.Holder.RefreshBundle
	}
	return l
}

// waitRefreshing waits until at, refreshing the trust bundle on the way.
// It reports false if ctx ended first.
func (l *loop) waitRefreshing(ctx context.Context, at time.Time) bool {
	for {
		wake := at
		if l.every > 0 && l.nextRefresh.Before(at) {
			wake = l.nextRefresh
		}
		if !sleep(ctx, time.Until(wake)) {
			return false
		}
		if !time.Now().Before(at) {
			return true
		}
		l.nextRefresh = time.Now().Add(l.every)
		if err := l.refresh(ctx); err != nil && ctx.Err() == nil {
			l.logger.WarnContext(ctx, "trust bundle refresh failed", logkey.Error, err)
		}
	}
}

// renewRetrying renews until it works, ctx ends (nil) or the certificate
// expires ([ErrExpired]).
func (l *loop) renewRetrying(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		notAfter := l.holder.Credential().Leaf().NotAfter
		if !time.Now().Before(notAfter) {
			l.logger.ErrorContext(ctx, "certificate expired; enroll again",
				logkey.CertNotAfter, notAfter)
			return ErrExpired
		}
		err := l.renew(ctx)
		if err == nil {
			l.renewed(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		left := time.Until(notAfter)
		l.logger.WarnContext(ctx, "certificate renewal failed", logkey.Error, err,
			logkey.TimeLeft, left.Round(time.Second), logkey.Attempt, attempt)
		if !sleep(ctx, min(retryDelay(left, l.rand()), max(left, 0))) {
			return nil
		}
	}
}

// retryDelay returns how long to wait after a failed renewal with left
// until expiry: a tenth of it, within [1s, 1m], with full jitter (u in
// [0, 1)) but at least 500ms.
func retryDelay(left time.Duration, u float64) time.Duration {
	base := min(max(left/10, minRetry), maxRetry)
	return max(time.Duration(u*float64(base)), minRetryFloor)
}

func (l *loop) renewed(ctx context.Context) {
	leaf := l.holder.Credential().Leaf()
	l.logger.InfoContext(ctx, "certificate renewed",
		logkey.CertSerial, leaf.SerialNumber.String(),
		logkey.CertFingerprint, certs.Fingerprint(leaf),
		logkey.CertNotAfter, leaf.NotAfter)
}

// sleep waits for d, or less if ctx ends first; it reports whether it
// waited the full time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
