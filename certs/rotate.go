package certs

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"
)

// Errors of a CA rotation.
var (
	// ErrRotationPending: a next root is already prepared.
	ErrRotationPending = errors.New("a next root is already prepared: activate it first")
	// ErrNothingPrepared: Activate was called without a prepared root.
	ErrNothingPrepared = errors.New("no next root is prepared: run prepare first")
	// ErrPreviousTrusted: a previous root is still trusted.
	ErrPreviousTrusted = errors.New("the previous root is still trusted: retire it first")
	// ErrNoPrevious: Retire was called with no previous root.
	ErrNoPrevious = errors.New("there is no previous root to retire")
)

// A CA rotation with overlap has three steps, each of which holders pick
// up when they next renew or refresh their trust bundle:
//
//  1. [Authority.Prepare] makes a next root and intermediate. They sign
//     nothing yet, but the next root joins the trust bundle, so holders
//     learn to trust it before anything depends on it.
//  2. [Authority.Activate] makes the next pair sign. The old pair becomes
//     the previous one, whose root stays in the bundle: certificates it
//     issued keep working until their holders renew.
//  3. [Authority.Retire] drops the previous root. From then on a
//     certificate that chains to it is refused.

// Prepare creates the next root and intermediate and adds the next root
// to the trust bundle. It returns [ErrRotationPending] if one exists.
func (a *Authority) Prepare() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next != nil {
		return ErrRotationPending
	}
	f := caFiles{a.dir}.next()
	os.RemoveAll(f.dir) // an interrupted Prepare leaves no root, only parts
	p, err := createPair(f, a.domain)
	if err != nil {
		return fmt.Errorf("preparing next root: %w", err)
	}
	a.next = p
	a.rebuildPoolLocked()
	return nil
}

// Activate makes the prepared pair sign and keeps the old root trusted as
// the previous one. It returns [ErrNothingPrepared] without a prepared
// pair and [ErrPreviousTrusted] while an older previous root is trusted.
func (a *Authority) Activate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.next == nil:
		return ErrNothingPrepared
	case a.previous != nil:
		return ErrPreviousTrusted
	}
	f := caFiles{a.dir}
	if err := movePair(f, f.previous()); err != nil {
		return fmt.Errorf("activating next root: %w", err)
	}
	if err := finishActivation(f); err != nil {
		return fmt.Errorf("activating next root: %w", err)
	}
	a.previous, a.active, a.next = a.active, a.next, nil
	a.rebuildPoolLocked()
	return nil
}

// finishActivation moves a prepared pair into place when the active one
// has been moved away: the second half of [Authority.Activate], also run
// by [Load] after a crash between the halves.
func finishActivation(f caFiles) error {
	if _, err := os.Stat(f.rootCert()); err == nil {
		return nil
	}
	if _, err := os.Stat(f.next().rootCert()); err != nil {
		return nil
	}
	if err := movePair(f.next(), f); err != nil {
		return err
	}
	return os.RemoveAll(f.next().dir)
}

// movePair renames a pair's files, the root certificate last.
func movePair(from, to caFiles) error {
	if err := os.MkdirAll(to.dir, 0o700); err != nil {
		return err
	}
	dst := to.pairFiles()
	for i, src := range from.pairFiles() {
		if err := os.Rename(src, dst[i]); err != nil {
			return err
		}
	}
	return nil
}

// Retire stops trusting the previous root and deletes its files. It
// returns [ErrNoPrevious] when there is none.
func (a *Authority) Retire() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.previous == nil {
		return ErrNoPrevious
	}
	if err := os.RemoveAll(caFiles{a.dir}.previous().dir); err != nil {
		return fmt.Errorf("retiring previous root: %w", err)
	}
	a.previous = nil
	a.rebuildPoolLocked()
	return nil
}

// RootInfo describes one trusted root.
type RootInfo struct {
	// Role is "active", "next" or "previous".
	Role     string    `json:"role"`
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	// Pin is the unpadded base64url SHA-256 of the root's DER, as join
	// tokens carry it.
	Pin string `json:"pin"`
}

// Roots describes every trusted root, the active one first.
func (a *Authority) Roots() []RootInfo {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []RootInfo
	for _, r := range []struct {
		role string
		p    *caPair
	}{{"active", a.active}, {"next", a.next}, {"previous", a.previous}} {
		if r.p == nil {
			continue
		}
		sum := sha256.Sum256(r.p.root.Raw)
		out = append(out, RootInfo{
			Role: r.role, Subject: r.p.root.Subject.CommonName,
			Serial: r.p.root.SerialNumber.String(), NotAfter: r.p.root.NotAfter,
			Pin: base64.RawURLEncoding.EncodeToString(sum[:]),
		})
	}
	return out
}
