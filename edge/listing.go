package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// listShape says where a list method keeps its items and what using an
// item means, so that the policy can be asked about each item as if the
// agent were about to use it.
type listShape struct {
	field  string // the result's array
	key    string // the item's identifying field
	method string // the method that uses an item
	input  string // where the item's key goes in input.mcp
}

var listShapes = map[string]listShape{
	"tools/list":               {"tools", "name", "tools/call", "tool"},
	"prompts/list":             {"prompts", "name", "prompts/get", "prompt"},
	"resources/list":           {"resources", "uri", "resources/read", "uri"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate", "resources/read", "uri"},
}

// Readers and event buffers of SSE streams, kept between responses: a
// new reader per response was one of the largest allocations of a call.
// A stream holds its reader while it waits for events, so the reader is
// small; a longer line is read on in pieces (readLongLine).
var (
	eventReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	eventBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// maxListBody bounds a list answer the edge holds to filter it.
const maxListBody = 16 << 20

// errUnfilterable is why a list answer the edge could not read is
// replaced by an error: an unfiltered list could show what the agent may
// not use.
var errUnfilterable = errors.New("the edge could not read this list answer to filter it")

// filtersList reports whether the answer to x must be filtered.
func filtersList(x *exchange) bool {
	_, ok := listShapes[x.method]
	return ok && x.kind == kindRequest
}

// relayMessages relays a 2xx answer message by message, as the client
// will read it: an SSE stream event by event, a JSON body whole. Each
// message is parsed strictly (pkg/mcp) so that the edge and the client
// cannot read it differently; one that does not parse is dropped. The
// server's requests to the agent are decided by the policy, and the
// answer to a list request is filtered. Other answers pass as they are.
func (e *Edge) relayMessages(
	ctx context.Context,
	w http.ResponseWriter,
	r *http.Request,
	x *exchange,
	l *link,
	resp *http.Response,
) error {
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mediaType == "text/event-stream":
		// Screening changes the length: the stream is chunked instead.
		resp.Header.Del("Content-Length")
		writeHead(w, x, resp)
		return e.filterEvents(ctx, w, r, x, l, resp.Body)
	case mediaType == "application/json":
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
		if err != nil {
			return err
		}
		out, keep := e.screenMessage(ctx, r, x, l, body)
		if !keep {
			out = mcp.ErrorBody(
				x.msgID,
				mcp.CodeUpstreamFailed,
				"the edge refused the server's answer (see the edge's log)",
				map[string]string{"request_id": x.id},
			)
		}
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		writeHead(w, x, resp)
		_, err = w.Write(out)
		return err
	case filtersList(x):
		// A list answer the edge cannot read is not passed unfiltered.
		x.fail(w, http.StatusBadGateway, mcp.CodeUpstreamFailed, errUnfilterable.Error())
		return nil
	}
	return e.copyAll(w, x, resp)
}

// screenMessage decides what of one message from the server reaches the
// agent: the message, the filtered list answer, or nothing (keep false).
func (e *Edge) screenMessage(
	ctx context.Context,
	r *http.Request,
	x *exchange,
	l *link,
	data []byte,
) ([]byte, bool) {
	if len(data) > maxListBody {
		e.logger.WarnContext(ctx, "server message over the limit, dropped", logkey.RequestID, x.id)
		return nil, false
	}
	m, err := mcp.Parse(data)
	if err != nil {
		e.logger.WarnContext(ctx, "server message refused",
			logkey.RequestID, x.id, logkey.Error, err)
		return nil, false
	}
	switch {
	case m.IsResponse() && filtersList(x) && sameID(m.ID, x.msgID):
		return e.filterMessage(ctx, r, x, data), true
	case m.IsResponse(), m.ID == nil:
		return data, true
	}
	req := serverMessage{ID: m.ID, Method: m.Method, Params: m.Params}
	return data, e.decideServerRequest(ctx, r, x, l, req)
}

func writeHead(w http.ResponseWriter, x *exchange, resp *http.Response) {
	tunnel.CopyEndToEnd(w.Header(), resp.Header)
	x.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	http.NewResponseController(w).Flush()
}

func (e *Edge) copyAll(w http.ResponseWriter, x *exchange, resp *http.Response) error {
	writeHead(w, x, resp)
	_, err := io.Copy(flushWriter{w}, resp.Body)
	return err
}

// flushWriter flushes after every write, so streams are never held.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	http.NewResponseController(f.w).Flush()
	return n, err
}

// filterEvents copies an SSE stream event by event, filtering the data of
// the event that answers the list request.
func (e *Edge) filterEvents(
	ctx context.Context,
	w http.ResponseWriter,
	r *http.Request,
	x *exchange,
	l *link,
	body io.Reader,
) error {
	br := eventReaders.Get().(*bufio.Reader)
	br.Reset(body)
	event := eventBuffers.Get().(*bytes.Buffer)
	event.Reset()
	defer func() {
		br.Reset(nil)
		eventReaders.Put(br)
		if event.Cap() <= 64<<10 {
			eventBuffers.Put(event)
		}
	}()
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: copy what was read before reading on,
			// which reuses the buffer, and keep reading it whole, up to
			// the limit.
			line, err = readLongLine(br, line)
		}
		if event.Len()+len(line) > maxListBody {
			return fmt.Errorf("SSE event over %d bytes", maxListBody)
		}
		event.Write(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 && len(line) > 0 {
			if werr := e.writeEvent(ctx, w, r, x, l, event.Bytes()); werr != nil {
				return werr
			}
			event.Reset()
		}
		if err != nil {
			if event.Len() > 0 {
				e.writeEvent(ctx, w, r, x, l, event.Bytes())
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// writeEvent writes one SSE event after screening its data (see
// screenMessage); an event the edge drops is not written at all.
func (e *Edge) writeEvent(
	ctx context.Context,
	w http.ResponseWriter,
	r *http.Request,
	x *exchange,
	l *link,
	event []byte,
) error {
	var data [][]byte
	var other [][]byte
	for _, line := range bytes.SplitAfter(event, []byte("\n")) {
		trimmed := bytes.TrimRight(line, "\r\n")
		// A CR alone ends a line for some SSE readers and not for others:
		// an event that holds one could be read two ways.
		if bytes.IndexByte(trimmed, '\r') >= 0 {
			e.logger.WarnContext(ctx, "SSE event with a bare CR, dropped", logkey.RequestID, x.id)
			return nil
		}
		if d, ok := bytes.CutPrefix(trimmed, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(d, []byte(" ")))
			continue
		}
		if len(trimmed) > 0 {
			other = append(other, line)
		}
	}
	out := event
	if len(data) > 0 {
		// SSE joins the data lines of an event with newlines.
		msg := bytes.Join(data, []byte("\n"))
		if len(bytes.TrimSpace(msg)) > 0 {
			screened, keep := e.screenMessage(ctx, r, x, l, msg)
			if !keep {
				return nil
			}
			if !bytes.Equal(screened, msg) {
				var b bytes.Buffer
				for _, line := range other {
					b.Write(line)
				}
				b.WriteString("data: ")
				b.Write(screened)
				b.WriteString("\n\n")
				out = b.Bytes()
			}
		}
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

func sameID(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil &&
		fmt.Sprint(x) == fmt.Sprint(y) && (a[0] == '"') == (b[0] == '"')
}

// filterMessage returns the list answer msg with only the items the scope
// and the policy allow this agent to use. An answer it cannot read is
// replaced by an error for the request.
func (e *Edge) filterMessage(ctx context.Context, r *http.Request, x *exchange, msg []byte) []byte {
	out, kept, total, err := e.filterItems(ctx, r, x, msg)
	if err != nil {
		e.logger.WarnContext(ctx, "list answer not filtered, replaced by an error",
			logkey.RequestID, x.id, logkey.MCPMethod, x.method, logkey.Error, err)
		return mcp.ErrorBody(
			x.msgID,
			mcp.CodeUpstreamFailed,
			errUnfilterable.Error(),
			map[string]string{"request_id": x.id},
		)
	}
	e.logger.DebugContext(ctx, "list filtered", logkey.RequestID, x.id, logkey.MCPMethod, x.method,
		"kept", kept, "total", total)
	return out
}

func (e *Edge) filterItems(
	ctx context.Context,
	r *http.Request,
	x *exchange,
	msg []byte,
) ([]byte, int, int, error) {
	if len(msg) > maxListBody {
		return nil, 0, 0, fmt.Errorf("list answer over %d bytes", maxListBody)
	}
	var envelope map[string]json.RawMessage
	if err := json.Unmarshal(msg, &envelope); err != nil {
		return nil, 0, 0, err
	}
	if _, isError := envelope["error"]; isError {
		return msg, 0, 0, nil
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(envelope["result"], &result); err != nil {
		return nil, 0, 0, fmt.Errorf("reading result: %w", err)
	}
	shape := listShapes[x.method]
	var items []json.RawMessage
	if raw, ok := result[shape.field]; ok {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, 0, 0, fmt.Errorf("reading result.%s: %w", shape.field, err)
		}
	}
	kept := make([]json.RawMessage, 0, len(items))
	// One input document for the whole list; each item changes only its
	// own copy of input.mcp.
	base := e.policyInput(r, x)
	for _, item := range items {
		var fields map[string]json.RawMessage
		var key string
		if json.Unmarshal(item, &fields) != nil || json.Unmarshal(fields[shape.key], &key) != nil {
			return nil, 0, 0, fmt.Errorf("an item of result.%s has no %s", shape.field, shape.key)
		}
		if e.mayUse(ctx, x, base, shape, key) {
			kept = append(kept, item)
		}
	}
	result[shape.field], _ = json.Marshal(kept)
	envelope["result"], _ = json.Marshal(result)
	out, err := json.Marshal(envelope)
	return out, len(kept), len(items), err
}

// mayUse asks the scope and the policy whether the agent may use one
// listed item: the input is that of using it, with listing set and no
// arguments. An error hides the item.
func (e *Edge) mayUse(
	ctx context.Context,
	x *exchange,
	base map[string]any,
	shape listShape,
	key string,
) bool {
	if !x.scope.Allows(x.resource, shape.method, key) {
		return false
	}
	input := maps.Clone(base)
	m := maps.Clone(base["mcp"].(map[string]any))
	input["mcp"] = m
	m["method"], m["listing"], m[shape.input] = shape.method, true, key
	m["arguments"], m["params"] = map[string]any{}, map[string]any{}
	delete(m, "id")
	d, err := e.policy.Eval(ctx, input)
	return err == nil && d.Allowed()
}

// readLongLine finishes a line of which head was read, refusing lines over
// maxListBody.
func readLongLine(br *bufio.Reader, head []byte) ([]byte, error) {
	line := bytes.Clone(head)
	for len(line) <= maxListBody {
		more, err := br.ReadSlice('\n')
		line = append(line, more...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
	return nil, fmt.Errorf("SSE line over %d bytes", maxListBody)
}
