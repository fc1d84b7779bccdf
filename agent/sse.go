package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// event is one server-sent event.
type event struct {
	// hasID is true when the event set the last event id (to id, which
	// may be empty: an empty id field resets it).
	hasID bool
	id    string
	// data is the event's data lines joined with newlines; empty for an
	// event that only sets the id, as MCP servers send first so that a
	// stream can be resumed from its start.
	data []byte
}

// eventReader reads server-sent events (the WHATWG event stream format:
// lines end with CRLF, LF or a lone CR) from an MCP response, each line
// and each event at most max bytes.
type eventReader struct {
	r      *bufio.Reader
	max    int
	line   []byte
	skipLF bool // the last line ended with CR: a LF right after belongs to it
}

func newEventReader(r io.Reader, max int) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// next returns the next event that carries data or sets the id. It
// returns io.EOF at the end of a stream that ended between events, and
// io.ErrUnexpectedEOF if it ended inside one (which is then lost, as the
// format says).
func (er *eventReader) next() (event, error) {
	var ev event
	var data bytes.Buffer
	started := false
	for {
		line, err := er.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && started {
				return event{}, io.ErrUnexpectedEOF
			}
			return event{}, err
		}
		if len(line) == 0 {
			if data.Len() > 0 || ev.hasID {
				ev.data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				return ev, nil
			}
			started = false
			continue
		}
		started = true
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if data.Len()+len(value) >= er.max {
				return event{}, fmt.Errorf("a server-sent event over %d bytes", er.max)
			}
			data.Write(value)
			data.WriteByte('\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 { // the format ignores ids with NUL
				ev.hasID, ev.id = true, string(value)
			}
		}
	}
}

// readLine returns the next line without its end. The slice is valid
// until the next call.
func (er *eventReader) readLine() ([]byte, error) {
	er.line = er.line[:0]
	for {
		b, err := er.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(er.line) > 0 {
				return er.line, nil
			}
			return nil, err
		}
		if er.skipLF {
			er.skipLF = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			er.skipLF = true
			return er.line, nil
		case '\n':
			return er.line, nil
		}
		if len(er.line) >= er.max {
			return nil, fmt.Errorf("a server-sent event line over %d bytes", er.max)
		}
		er.line = append(er.line, b)
	}
}
