package enroll

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockhq/airlock/certs"
)

func TestRenewAt(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // the real issue time
	const bd = certs.Backdate
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		jitter    float64
		want      time.Time
	}{
		{"two thirds", at.Add(-bd), at.Add(30 * 24 * time.Hour), 0, at.Add(20 * 24 * time.Hour)},
		{"counts from NotBefore plus Backdate", at, at.Add(bd + 3*time.Hour), 0, at.Add(bd + 2*time.Hour)},
		{"latest jitter adds 5%", at.Add(-bd), at.Add(100 * time.Hour), 1, at.Add(71*time.Hour + 40*time.Minute)},
		{"earliest jitter takes 5%", at.Add(-bd), at.Add(100 * time.Hour), -1, at.Add(61*time.Hour + 40*time.Minute)},
		{"half jitter", at.Add(-bd), at.Add(100 * time.Hour), 0.5, at.Add(69*time.Hour + 10*time.Minute)},
		{"jitter above 1 clamped", at.Add(-bd), at.Add(100 * time.Hour), 7, at.Add(71*time.Hour + 40*time.Minute)},
		{"jitter below -1 clamped", at.Add(-bd), at.Add(100 * time.Hour), -7, at.Add(61*time.Hour + 40*time.Minute)},
		{"expired before issue", at.Add(-bd), at.Add(-time.Hour), 0, at.Add(-time.Hour)},
		{"expires at issue", at.Add(-bd), at, 1, at},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: tt.notBefore, NotAfter: tt.notAfter}
			got := RenewAt(leaf, tt.jitter)
			if !got.Equal(tt.want) {
				t.Errorf("RenewAt(%s..%s, %v) = %s, want %s",
					tt.notBefore, tt.notAfter, tt.jitter, got, tt.want)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		left time.Duration
		u    float64
		want time.Duration
	}{
		{time.Hour, 0.9, 54 * time.Second},
		{time.Hour, 0.5, 30 * time.Second},
		{5 * time.Minute, 0.5, 15 * time.Second},
		{5 * time.Minute, 0, 500 * time.Millisecond},
		{3 * time.Second, 0.9, 900 * time.Millisecond},
		{3 * time.Second, 0.1, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := retryDelay(tt.left, tt.u); got != tt.want {
			t.Errorf("retryDelay(%s, %v) = %s, want %s", tt.left, tt.u, got, tt.want)
		}
	}
}

func TestRenewerRenewsAtTwoThirds(t *testing.T) {
	tests := []struct {
		name string
		life time.Duration
		want []time.Duration
	}{
		{"one hour", time.Hour, []time.Duration{40 * time.Minute, 80 * time.Minute, 120 * time.Minute}},
		{"six seconds", 6 * time.Second, []time.Duration{4 * time.Second, 8 * time.Second, 12 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				testRenewsAt(t, tt.life, tt.want)
			})
		})
	}
}

// testRenewsAt runs a Renewer for certificates of life until it renewed
// len(want) times, and checks when it did and what it logged.
func testRenewsAt(t *testing.T, life time.Duration, want []time.Duration) {
	t.Helper()
	start := time.Now()
	h := testHolder(t, life)
	ctx, cancel := context.WithCancel(t.Context())
	var at []time.Duration
	logs := &logBuffer{}
	r := &Renewer{Holder: h, Logger: logs.logger(), BundleRefresh: -1, Rand: fixedRand(0.5)}
	r.renew = func(context.Context) error {
		at = append(at, time.Since(start))
		if len(at) == len(want) {
			defer cancel()
		}
		return h.replace(testCredential(t, life), nil)
	}

	if err := r.Run(ctx); err != nil {
		t.Errorf("Run() = %v after cancel, want nil", err)
	}
	if diff := cmp.Diff(want, at); diff != "" {
		t.Errorf("renewal times mismatch (-want +got):\n%s", diff)
	}
	renewed := logs.find("certificate renewed")
	if len(renewed) != len(want) || renewed[0]["level"] != "INFO" {
		t.Fatalf("logged %d Info records \"certificate renewed\", want %d", len(renewed), len(want))
	}
	last := renewed[len(renewed)-1]
	for _, key := range []string{"cert_serial", "cert_fingerprint", "cert_not_after", "identity"} {
		if last[key] == nil {
			t.Errorf("\"certificate renewed\" record has no %s", key)
		}
	}
	if got, want := last["cert_serial"], h.Credential().Leaf().SerialNumber.String(); got != want {
		t.Errorf("logged serial %v, want the new one %s", got, want)
	}
}

func TestRenewerJitter(t *testing.T) {
	tests := []struct {
		u    float64
		want time.Duration // after issue, for a lifetime of 100h
	}{
		{0, 61*time.Hour + 40*time.Minute},
		{0.5, 66*time.Hour + 40*time.Minute},
		{0.75, 69*time.Hour + 10*time.Minute},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			h := testHolder(t, 100*time.Hour)
			ctx, cancel := context.WithCancel(t.Context())
			r := &Renewer{Holder: h, BundleRefresh: -1, Rand: fixedRand(tt.u)}
			var got time.Duration
			r.renew = func(context.Context) error {
				got = time.Since(start)
				cancel()
				return nil
			}
			r.Run(ctx)
			if got != tt.want {
				t.Errorf("with Rand() = %v renewed after %s, want %s", tt.u, got, tt.want)
			}
		})
	}
}

func TestRenewerRetriesUntilExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := testHolder(t, time.Hour)
		logs := &logBuffer{}
		var at []time.Duration
		r := &Renewer{Holder: h, Logger: logs.logger(), BundleRefresh: -1, Rand: fixedRand(0.5)}
		r.renew = func(context.Context) error {
			at = append(at, time.Since(start))
			return errors.New("edge unreachable")
		}

		if err := r.Run(t.Context()); !errors.Is(err, ErrExpired) {
			t.Fatalf("Run() = %v, want ErrExpired", err)
		}
		if got := time.Since(start); got != time.Hour {
			t.Errorf("Run() returned %s after start, want at expiry (1h)", got)
		}

		if len(at) < 3 {
			t.Fatalf("renew attempted %d times, want retries", len(at))
		}
		// With 20m left: a tenth of it capped at a minute, halved by the
		// jitter; near the end, never less than 500ms.
		wantFirst := []time.Duration{40 * time.Minute, 40*time.Minute + 30*time.Second, 41 * time.Minute}
		if diff := cmp.Diff(wantFirst, at[:3]); diff != "" {
			t.Errorf("first attempts mismatch (-want +got):\n%s", diff)
		}
		for i := 1; i < len(at); i++ {
			if d := at[i] - at[i-1]; d < 500*time.Millisecond {
				t.Fatalf("attempt %d came %s after the previous one, want at least 500ms", i+1, d)
			}
		}
		if d := at[len(at)-1] - at[len(at)-2]; d != 500*time.Millisecond {
			t.Errorf("last attempts came %s apart, want 500ms", d)
		}

		failed := logs.find("certificate renewal failed")
		if len(failed) != len(at) {
			t.Fatalf("logged %d failures for %d attempts, want one per attempt", len(failed), len(at))
		}
		wantFailed := map[string]any{
			"level": "WARN", "msg": "certificate renewal failed", "error": "edge unreachable",
			"time_left": float64(20 * time.Minute), "attempt": float64(1),
			"component": "certs.renewer", "identity": h.Identity().String(),
		}
		if diff := cmp.Diff(wantFailed, failed[0]); diff != "" {
			t.Errorf("first failure record mismatch (-want +got):\n%s", diff)
		}
		if got := failed[1]["attempt"]; got != float64(2) {
			t.Errorf("second failure has attempt %v, want 2", got)
		}
		expired := logs.find("certificate expired; enroll again")
		if len(expired) != 1 || expired[0]["level"] != "ERROR" {
			t.Errorf("logged %v, want one Error record \"certificate expired; enroll again\"", expired)
		}
	})
}

func TestRenewerRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := testHolder(t, time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		var at []time.Duration
		r := &Renewer{Holder: h, BundleRefresh: -1, Rand: fixedRand(0.5)}
		r.renew = func(context.Context) error {
			at = append(at, time.Since(start))
			switch len(at) {
			case 1, 2:
				return errors.New("edge unreachable")
			case 4:
				cancel()
			}
			return h.replace(testCredential(t, time.Hour), nil)
		}

		if err := r.Run(ctx); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		want := []time.Duration{
			40 * time.Minute, 40*time.Minute + 30*time.Second, 41 * time.Minute,
			81 * time.Minute, // two thirds of the certificate renewed at 41m
		}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("attempt times mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestRenewerNoBusyLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := testHolder(t, time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		var at []time.Duration
		r := &Renewer{Holder: h, BundleRefresh: -1, Rand: fixedRand(0.5)}
		// A renewal that leaves a certificate already due, as one from an
		// edge whose clock is far behind would.
		r.renew = func(context.Context) error {
			at = append(at, time.Since(start))
			if len(at) > 10 {
				cancel() // busy: stop, and fail below
			}
			return nil
		}
		time.AfterFunc(41*time.Minute+45*time.Second, cancel)

		if err := r.Run(ctx); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		// As after failures: 20m left, so a minute halved by the jitter.
		want := []time.Duration{
			40 * time.Minute, 40*time.Minute + 30*time.Second,
			41 * time.Minute, 41*time.Minute + 30*time.Second,
		}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("renewal times mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestRenewerStopsOnCancel(t *testing.T) {
	tests := []struct {
		name     string
		cancelAt time.Duration
		fail     bool
	}{
		{"while waiting", 10 * time.Minute, false},
		{"while retrying", 40*time.Minute + 10*time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				h := testHolder(t, time.Hour)
				ctx, cancel := context.WithCancel(t.Context())
				r := &Renewer{Holder: h, Rand: fixedRand(0.5)}
				r.renew = func(context.Context) error { return errors.New("edge unreachable") }
				r.refresh = func(context.Context) error { return nil }
				time.AfterFunc(tt.cancelAt, cancel)

				if err := r.Run(ctx); err != nil {
					t.Errorf("Run() = %v, want nil", err)
				}
				if got := time.Since(start); got != tt.cancelAt {
					t.Errorf("Run() returned %s after start, want at once on cancel (%s)", got, tt.cancelAt)
				}
			})
		})
	}
}

func TestRenewerRefreshesBundle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := testHolder(t, time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		logs := &logBuffer{}
		var refreshes []time.Duration
		r := &Renewer{
			Holder:        h,
			Logger:        logs.logger(),
			BundleRefresh: 15 * time.Minute,
			Rand:          fixedRand(0.5),
		}
		r.refresh = func(context.Context) error {
			refreshes = append(refreshes, time.Since(start))
			return errors.New("edge unreachable")
		}
		r.renew = func(context.Context) error {
			return h.replace(testCredential(t, time.Hour), nil)
		}
		time.AfterFunc(90*time.Minute, cancel)

		if err := r.Run(ctx); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		// Renewals at 40m and 80m restart the schedule.
		want := []time.Duration{15 * time.Minute, 30 * time.Minute, 55 * time.Minute, 70 * time.Minute}
		if diff := cmp.Diff(want, refreshes); diff != "" {
			t.Errorf("refresh times mismatch (-want +got):\n%s", diff)
		}
		warned := logs.find("trust bundle refresh failed")
		if len(warned) != len(want) {
			t.Fatalf("logged %d refresh failures, want %d", len(warned), len(want))
		}
		if warned[0]["level"] != "WARN" || warned[0]["error"] != "edge unreachable" {
			t.Errorf("logged %v, want a Warn record with the error", warned[0])
		}
	})
}

// fixedRand returns a Rand that always returns u.
func fixedRand(u float64) func() float64 {
	return func() float64 { return u }
}

// testHolder returns a holder, in a new folder, of a self-signed agent
// certificate issued now for life.
func testHolder(t *testing.T, life time.Duration) *Holder {
	t.Helper()
	cred := testCredential(t, life)
	id, _ := certs.IdentityOf(cred.Leaf())
	return newHolder(t.TempDir(), "https://edge.invalid", id, cred, cred.Chain)
}

// testCredential returns a self-signed certificate for agent ci, shaped
// as the CA shapes them: issued now, backdated, valid for life.
func testCredential(t *testing.T, life time.Duration) *certs.Credential {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	id := certs.Identity{Domain: certs.DefaultTrustDomain, Kind: certs.KindAgent, Name: "ci"}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "ci"},
		URIs:         []*url.URL{id.URI()},
		NotBefore:    now.Add(-certs.Backdate),
		NotAfter:     now.Add(life),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.Credential{Chain: []*x509.Certificate{leaf}, Key: key}
}

// logBuffer collects JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) logger() *slog.Logger {
	strip := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: strip}
	return slog.New(slog.NewJSONHandler(b, opts))
}

// find returns the records with message msg.
func (b *logBuffer) find(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
