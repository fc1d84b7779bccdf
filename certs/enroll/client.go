package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxAnswer bounds what we read of an edge's answer: a chain, a bundle
// and some JSON fit many times over.
const maxAnswer = 1 << 20

// DefaultHTTPClientTimeout bounds each request to the edge's certificate
// endpoints when [Options.HTTPClientTimeout] is zero.
const DefaultHTTPClientTimeout = 30 * time.Second

// newTransport returns a transport that dials TLS itself, with the config
// tlsConfig returns for the host of each new connection. Building the
// config per connection is what lets a renewed certificate or an updated
// trust bundle take effect without a new transport.
func newTransport(tlsConfig func(host string) *tls.Config) *http.Transport {
	t := &http.Transport{
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{Config: tlsConfig(host)}
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// newClient returns a client for a few requests, with one timeout for
// each. Close its idle connections when done.
func newClient(timeout time.Duration, tlsConfig func(host string) *tls.Config) *http.Client {
	return &http.Client{Timeout: timeout, Transport: newTransport(tlsConfig)}
}

// verifiedTLS returns a config function that trusts roots alone, for
// holders that have no certificate yet.
func verifiedTLS(roots *x509.CertPool) func(string) *tls.Config {
	return func(host string) *tls.Config {
		return &tls.Config{
			MinVersion: tls.VersionTLS13,
			ServerName: host,
			RootCAs:    roots,
			NextProtos: []string{"h2", "http/1.1"},
		}
	}
}

// exchange posts req as JSON to url and decodes a 2xx answer. A refusal
// comes back as a *[RefusedError].
func exchange(ctx context.Context, client *http.Client, url string, req Request) (Response, error) {
	var resp Response
	body, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("encoding request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	data, err := do(client, hreq)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return resp, fmt.Errorf("decoding answer of %s: %w", url, err)
	}
	return resp, nil
}

// fetchBundle gets the PEM trust bundle at url; one without a certificate
// is an error.
func fetchBundle(
	ctx context.Context,
	client *http.Client,
	url string,
) ([]*x509.Certificate, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	data, err := do(client, hreq)
	if err != nil {
		return nil, err
	}
	bundle, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("reading trust bundle from %s: %w", url, err)
	}
	return bundle, nil
}

// do sends hreq and returns the body of a 2xx answer, or a *[RefusedError].
func do(client *http.Client, hreq *http.Request) ([]byte, error) {
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading answer of %s: %w", hreq.URL, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, refusal(resp.StatusCode, data)
	}
	return data, nil
}

// refusal reads the body of a non-2xx answer. One that is not an
// [ErrorResponse] (a proxy's HTML page, say) still makes a RefusedError,
// with a short snippet of the body as its description.
func refusal(status int, body []byte) *RefusedError {
	var er ErrorResponse
	if err := json.Unmarshal(body, &er); err == nil && er.Error != "" {
		return &RefusedError{
			Status:      status,
			Code:        er.Error,
			Description: er.Description,
			RequestID:   er.RequestID,
		}
	}
	return &RefusedError{Status: status, Description: snippet(body)}
}

// snippet returns the start of body on one line, or a note that it is
// empty.
func snippet(body []byte) string {
	const max = 200
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "?")), " ")
	if s == "" {
		return "empty answer"
	}
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}
