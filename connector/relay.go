package connector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// headerTimeout bounds how long the edge may take to send a request's
// stream header and HTTP head.
const headerTimeout = 10 * time.Second

// JSON-RPC error codes the connector answers with when it cannot serve a
// request; see package mcp.
const (
	codeUnknownResource = mcp.CodeUnknownResource
	codeUpstreamFailed  = mcp.CodeUpstreamFailed
)

// headWriters buffer response heads; a new 4 KiB writer per request was
// one of the largest allocations of a relayed call.
var headWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// relay serves one request stream: it reads the stream header and the
// HTTP request, sends the request to the resource's upstream and streams
// the response back, one write per read so that SSE events leave at once.
func (c *Connector) relay(str *quic.Stream, keys *edgeKeys, logger *slog.Logger) {
	defer str.Close()
	// Whatever of the request is left unread is not wanted any more; say
	// so, or the edge's writer would wait on flow control.
	defer str.CancelRead(tunnel.CodeOK)
	str.SetReadDeadline(time.Now().Add(headerTimeout))
	var hdr tunnel.StreamHeader
	if err := tunnel.ReadFrame(str, &hdr); err != nil {
		logger.Warn("bad stream header", logkey.Error, err)
		resetStream(str, tunnel.CodeProtocol)
		return
	}
	logger = logger.With(logkey.Resource, hdr.Resource, logkey.RequestID, hdr.RequestID)
	req, err := http.ReadRequest(bufio.NewReader(str))
	if err != nil {
		logger.Warn("bad tunneled request", logkey.Error, err)
		resetStream(str, tunnel.CodeProtocol)
		return
	}
	str.SetReadDeadline(time.Time{})

	up, ok := c.upstream[hdr.Resource]
	if !ok {
		writeError(str, hdr.RequestID, http.StatusNotFound, codeUnknownResource,
			fmt.Sprintf("connector %s does not serve resource %q", c.cfg.Name, hdr.Resource))
		return
	}
	if err := c.checkAssertion(str.Context(), keys, hdr.Resource, req); err != nil {
		logger.Warn("identity assertion refused", logkey.Error, err)
		writeError(str, hdr.RequestID, http.StatusBadGateway, mcp.CodeAssertionRefused,
			fmt.Sprintf("connector %s refused the edge's identity assertion for this request", c.cfg.Name))
		return
	}
	// The stream's context ends when the edge stops reading (the agent went
	// away), which cancels the upstream call.
	resp, err := up.client.Do(c.upstreamRequest(str.Context(), up, req))
	if err != nil {
		logger.Warn("upstream request failed", logkey.Error, err)
		writeError(str, hdr.RequestID, http.StatusBadGateway, codeUpstreamFailed,
			fmt.Sprintf("connector %s could not reach the upstream of resource %s", c.cfg.Name, hdr.Resource))
		return
	}
	defer resp.Body.Close()
	if err := writeResponse(str, resp); err != nil {
		logger.Debug("response relay ended early", logkey.Error, err)
	}
}

func (c *Connector) upstreamRequest(ctx context.Context, up *upstream, in *http.Request) *http.Request {
	u := *up.url
	u.RawQuery = in.URL.RawQuery
	out := &http.Request{
		Method:        in.Method,
		URL:           &u,
		Host:          u.Host,
		Header:        http.Header{},
		Body:          in.Body,
		ContentLength: in.ContentLength,
	}
	tunnel.CopyEndToEnd(out.Header, in.Header)
	if in.ContentLength == 0 {
		out.Body = http.NoBody
	}
	return out.WithContext(ctx)
}

// writeResponse writes the response head and streams the body. The body
// ends with the stream; if the upstream fails mid-body the stream is reset
// so the edge never mistakes a cut response for a whole one.
func writeResponse(str *quic.Stream, resp *http.Response) error {
	bw := headWriters.Get().(*bufio.Writer)
	bw.Reset(str)
	defer func() {
		bw.Reset(nil)
		headWriters.Put(bw)
	}()
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	h := http.Header{}
	tunnel.CopyEndToEnd(h, resp.Header)
	h.Del("Content-Length")
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		resetStream(str, tunnel.CodeCancelled)
		return fmt.Errorf("writing response head: %w", err)
	}

	var buf tunnel.BodyBuffer
	defer buf.Release()
	for {
		n, rerr := resp.Body.Read(buf.Bytes())
		if n > 0 {
			if _, err := str.Write(buf.Bytes()[:n]); err != nil {
				resetStream(str, tunnel.CodeCancelled)
				return fmt.Errorf("writing response body: %w", err)
			}
		}
		buf.Filled(n)
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			str.CancelWrite(tunnel.CodeUpstream)
			return fmt.Errorf("reading upstream body: %w", rerr)
		}
	}
}

// writeError answers with a JSON-RPC error whose id is null: the connector
// never parses the request it relays.
func writeError(str *quic.Stream, requestID string, status, code int, msg string) {
	body := mcp.ErrorBody(nil, code, msg, map[string]string{"request_id": requestID})
	resp := &http.Response{
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
	}
	writeResponse(str, resp)
}

func resetStream(str *quic.Stream, code quic.StreamErrorCode) {
	str.CancelRead(code)
	str.CancelWrite(code)
}

// maxRelayBody bounds a request body the connector holds to check it
// against its assertion; the edge's own limit is normally far lower.
const maxRelayBody = 256 << 20

// checkAssertion verifies the edge's identity assertion on req, that it
// was not used before, and that it describes exactly this request, then
// leaves the checked body in req.Body. Nothing reaches the upstream
// without one.
func (c *Connector) checkAssertion(ctx context.Context, keys *edgeKeys, resource string, req *http.Request) error {
	claims, err := keys.verify(ctx, req.Header.Get(token.AssertionHeader), resource)
	if err != nil {
		return err
	}
	if !c.replays.First(claims.ID, claims.ExpiresAt.Add(assertionLeeway), time.Now()) {
		return fmt.Errorf("assertion %s was already used", claims.ID)
	}
	if req.ContentLength > maxRelayBody || req.ContentLength < 0 && req.Body != http.NoBody {
		return fmt.Errorf("request body of %d bytes cannot be checked", req.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxRelayBody))
	if err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	got := token.RequestDigest{HTTPMethod: req.Method, Method: claims.Request.Method,
		Name: claims.Request.Name, BodySHA256: token.BodyDigest(body)}
	if got != claims.Request {
		return fmt.Errorf("assertion describes %s with body %q, the request is %s with body %q",
			claims.Request.HTTPMethod, claims.Request.BodySHA256, got.HTTPMethod, got.BodySHA256)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}
