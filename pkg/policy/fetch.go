package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/airlockhq/airlock/pkg/logkey"
)

// maxBundleBytes bounds a downloaded policy bundle.
const maxBundleBytes = 64 << 20

// Fetcher keeps a signed OPA bundle from a bundle server in a local file,
// which an [Engine] of that file then reloads: fleets of edges follow one
// policy source. Only bundles whose signature verifies against the
// public key are written (OPA's bundle signing: a .signatures.json JWT
// over the files' hashes); anything else is refused, and the last good
// bundle stays.
type Fetcher struct {
	// URL is the bundle's address (https).
	URL string
	// PublicKey is the PEM public key (or HMAC secret) that signs it.
	PublicKey string
	// Algorithm is the signing algorithm: RS256, ES256, ... Default RS256.
	Algorithm string
	// Dest is the file the verified bundle is written to.
	Dest string
	// Client fetches; nil means http.DefaultClient.
	Client *http.Client
	// Logger reports fetches; nil discards.
	Logger *slog.Logger

	etag string
}

// ErrNotModified is returned by Fetch when the server has nothing new.
var ErrNotModified = errors.New("bundle not modified")

// Fetch downloads the bundle once, verifies it and writes it to Dest.
func (f *Fetcher) Fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return fmt.Errorf("fetching policy bundle: %w", err)
	}
	if f.etag != "" {
		req.Header.Set("If-None-Match", f.etag)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching policy bundle %s: %w", f.URL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return ErrNotModified
	case http.StatusOK:
	default:
		return fmt.Errorf("fetching policy bundle %s: %s", f.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBundleBytes+1))
	if err != nil || len(data) > maxBundleBytes {
		return fmt.Errorf("reading policy bundle %s: too large or cut short (%v)", f.URL, err)
	}
	if err := f.verify(data); err != nil {
		return err
	}
	if err := writeChecked(ctx, f.Dest, data); err != nil {
		return err
	}
	f.etag = resp.Header.Get("ETag")
	return nil
}

// verify reads data as a bundle whose signature must verify.
func (f *Fetcher) verify(data []byte) error {
	alg := f.Algorithm
	if alg == "" {
		alg = "RS256"
	}
	vc := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{
		"airlock": {Key: f.PublicKey, Algorithm: alg},
	}, "airlock", "", nil)
	_, err := bundle.NewReader(bytes.NewReader(data)).WithBundleVerificationConfig(vc).Read()
	if err != nil {
		return fmt.Errorf("verifying policy bundle %s: %w", f.URL, err)
	}
	return nil
}

// writeChecked writes a verified bundle to path only if it also compiles
// and passes its own tests, so that the file on disk is always a bundle
// the edge can start with.
func writeChecked(ctx context.Context, path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bundle-*.tar.gz")
	if err != nil {
		return fmt.Errorf("writing policy bundle: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing policy bundle: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing policy bundle: %w", err)
	}
	if _, err := compile(ctx, tmp.Name()); err != nil {
		return fmt.Errorf("checking policy bundle: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// Run fetches every interval until ctx ends. Failures are logged; the
// last good bundle stays in Dest.
func (f *Fetcher) Run(ctx context.Context, every time.Duration) {
	logger := f.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch err := f.Fetch(ctx); {
		case err == nil:
			logger.Info("policy bundle fetched", "url", f.URL)
		case errors.Is(err, ErrNotModified):
		default:
			logger.Error("policy bundle refused, keeping the last good one", logkey.Error, err)
		}
	}
}
