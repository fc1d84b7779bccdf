package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// Readers of tunneled responses and writers of tunneled requests, kept
// between requests: a new reader and writer per request were the largest
// allocations of a forwarded call. A response's reader is held for as
// long as its body streams, SSE included, so it is small: reads larger
// than it go past it to the stream.
var (
	streamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	streamWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// forward carries the request through the tunnel on a stream of its own
// and streams the answer back to the agent as it arrives.
func (e *Edge) forward(w http.ResponseWriter, r *http.Request, x *exchange, l *link, body []byte) {
	ctx := r.Context()
	str, err := l.conn.OpenStreamSync(ctx)
	if err != nil {
		e.tunnelFailed(w, r, x, l, fmt.Errorf("opening stream: %w", err))
		return
	}
	l.inFlight.Add(1)
	e.metrics.inFlight.Inc()
	defer func() {
		l.inFlight.Add(-1)
		e.metrics.inFlight.Dec()
	}()

	// An agent that goes away cancels the stream both ways; the connector
	// then cancels its upstream call.
	stop := context.AfterFunc(ctx, func() { abandon(str) })
	defer stop()

	out, err := e.tunnelRequest(r, x, body)
	if err != nil {
		abandon(str)
		e.logger.ErrorContext(ctx, "signing identity assertion failed", logkey.RequestID, x.id, logkey.Error, err)
		x.fail(w, http.StatusInternalServerError, mcp.CodeUpstreamFailed, "the edge could not sign the request's identity assertion")
		return
	}
	if fn := e.tamper.Load(); fn != nil {
		(*fn)(out)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- writeRequest(str, x, out) }()

	// Deferred before resp.Body.Close, so the reader goes back to the pool
	// only after the body is done with it.
	br := streamReaders.Get().(*bufio.Reader)
	br.Reset(str)
	defer func() {
		br.Reset(nil)
		streamReaders.Put(br)
	}()
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		abandon(str)
		<-wrote
		if ctx.Err() != nil {
			e.endedEarly(w, x, context.Cause(ctx))
			return
		}
		e.tunnelFailed(w, r, x, l, fmt.Errorf("reading response: %w", err))
		return
	}
	defer resp.Body.Close()
	e.latencyObserved(r, x)
	e.trackSession(r, x, l, resp)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := e.relayMessages(ctx, w, r, x, l, resp); err != nil {
			abandon(str)
			<-wrote
			e.logger.WarnContext(ctx, "response cut short", logkey.RequestID, x.id, logkey.Error, err)
			panic(http.ErrAbortHandler)
		}
	} else {
		e.relayResponse(w, x, resp, str)
	}
	<-wrote
}

// tunnelRequest builds the HTTP/1.1 request that crosses the tunnel: the
// agent's end-to-end headers minus its credentials and minus any header
// claiming an Airlock identity, the body the edge read, and the edge's
// request ID. The connector decides the upstream URL; the edge only names
// the resource.
func (e *Edge) tunnelRequest(r *http.Request, x *exchange, body []byte) (*http.Request, error) {
	h := http.Header{}
	tunnel.CopyEndToEnd(h, r.Header)
	h.Del("Authorization")
	h.Del("Cookie")
	for k := range h {
		if strings.HasPrefix(k, "Airlock-") {
			delete(h, k)
		}
	}
	h.Set(headerRequestID, x.id)
	assertion, err := e.assertion(x, r.Method, body)
	if err != nil {
		return nil, err
	}
	h.Set(token.AssertionHeader, assertion)
	if _, ok := h["User-Agent"]; !ok {
		// An empty value tells Request.Write to add no User-Agent of its own.
		h["User-Agent"] = []string{""}
	}
	out := &http.Request{
		Method:     r.Method,
		URL:        &url.URL{Path: "/", RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       x.resource,
	}
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
	}
	return out, nil
}

// writeRequest writes the stream header and the request through one
// buffer, so that a small request leaves in one stream write.
func writeRequest(str *quic.Stream, x *exchange, out *http.Request) error {
	bw := streamWriters.Get().(*bufio.Writer)
	bw.Reset(str)
	defer func() {
		bw.Reset(nil)
		streamWriters.Put(bw)
	}()
	err := tunnel.WriteFrame(bw, &tunnel.StreamHeader{Resource: x.resource, RequestID: x.id})
	if err == nil {
		err = out.Write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		str.CancelWrite(tunnel.CodeCancelled)
		return err
	}
	return str.Close()
}

// abandon cancels both directions of a stream whose exchange is over
// early. Cancelling the read side first means an unfinished response body
// (an SSE stream) never holds the stream open.
func abandon(str *quic.Stream) {
	str.CancelRead(tunnel.CodeCancelled)
	str.CancelWrite(tunnel.CodeCancelled)
}

// endedEarly answers a request that ended before its response arrived.
// A revoked or expired certificate is the agent's to know about; an agent
// that hung up reads nothing, and the status only feeds the metrics.
func (e *Edge) endedEarly(w http.ResponseWriter, x *exchange, cause error) {
	switch {
	case errors.Is(cause, ErrRevoked), errors.Is(cause, ErrCertExpired):
		x.fail(w, http.StatusUnauthorized, mcp.CodeUnauthenticated,
			fmt.Sprintf("the request was ended: %v", cause))
	default:
		x.status = 499
	}
}

func (e *Edge) tunnelFailed(w http.ResponseWriter, r *http.Request, x *exchange, l *link, err error) {
	e.logger.WarnContext(r.Context(), "tunnel request failed",
		logkey.RequestID, x.id, logkey.Resource, x.resource, logkey.ConnectorName, l.connector, logkey.Error, err)
	x.fail(w, http.StatusBadGateway, mcp.CodeUpstreamFailed,
		fmt.Sprintf("the tunnel to connector %s failed before a response arrived", l.connector))
}

func (e *Edge) latencyObserved(r *http.Request, x *exchange) {
	e.metrics.latency.WithLabelValues(x.resource, r.Method).Observe(time.Since(x.start).Seconds())
}

// trackSession pins a new MCP session to the connector instance that
// created it and bound to the agent that asked, and forgets sessions that
// ended.
func (e *Edge) trackSession(r *http.Request, x *exchange, l *link, resp *http.Response) {
	sent := r.Header.Get(headerSession)
	got := resp.Header.Get(headerSession)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	switch {
	case sent == "" && got != "" && ok && r.Method == http.MethodPost && len(got) <= maxSessionIDLen:
		e.sessions.bind(x.resource, got, binding{agent: x.agent.String(), connector: l.connector, instance: l.instance})
	case sent != "" && r.Method == http.MethodDelete && ok:
		e.sessions.forget(x.resource, sent)
	case sent != "" && resp.StatusCode == http.StatusNotFound:
		e.sessions.forget(x.resource, sent)
	}
}

// relayResponse copies the response head and streams the body, flushing
// after every read so that SSE events reach the agent at once. A body cut
// short by the tunnel aborts the agent's response rather than ending it
// cleanly, so the agent never takes a partial body for a whole one.
func (e *Edge) relayResponse(w http.ResponseWriter, x *exchange, resp *http.Response, str *quic.Stream) {
	tunnel.CopyEndToEnd(w.Header(), resp.Header)
	x.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	rc.Flush()

	var buf tunnel.BodyBuffer
	defer buf.Release()
	var n int64
	defer func() { e.metrics.bytes.WithLabelValues(x.resource, "out").Add(float64(n)) }()
	for {
		k, rerr := resp.Body.Read(buf.Bytes())
		if k > 0 {
			if _, werr := w.Write(buf.Bytes()[:k]); werr != nil {
				abandon(str)
				return
			}
			n += int64(k)
			rc.Flush()
		}
		buf.Filled(k)
		if errors.Is(rerr, io.EOF) {
			return
		}
		if rerr != nil {
			abandon(str)
			e.logger.Warn("response cut short by the tunnel",
				logkey.RequestID, x.id, logkey.Resource, x.resource, logkey.Error, rerr)
			panic(http.ErrAbortHandler)
		}
	}
}
