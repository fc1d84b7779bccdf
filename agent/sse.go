package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// event is one server-sent event: its id and its data lines joined.
type event struct {
	id   string
	data []byte
}

// eventReader reads server-sent events (the WHATWG event stream format)
// from an MCP response, each at most max bytes.
type eventReader struct {
	r   *bufio.Reader
	max int
}

func newEventReader(r io.Reader, max int) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// next returns the next event that carries data. It returns io.EOF at the
// end of a stream that ended between events, io.ErrUnexpectedEOF if it
// ended inside one.
func (er *eventReader) next() (event, error) {
	var ev event
	var data bytes.Buffer
	started := false
	for {
		line, err := er.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && started {
				return ev, io.ErrUnexpectedEOF
			}
			return ev, err
		}
		if len(line) == 0 {
			if data.Len() > 0 {
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
			if data.Len()+len(value) > er.max {
				return ev, fmt.Errorf("a server-sent event over %d bytes", er.max)
			}
			data.Write(value)
			data.WriteByte('\n')
		case "id":
			ev.id = string(value)
		}
	}
}

// readLine reads one line without its end (LF, CRLF or a lone CR at the
// end of what was read), up to the size limit.
func (er *eventReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := er.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > er.max {
			return nil, fmt.Errorf("a server-sent event line over %d bytes", er.max)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && len(line) == 0 {
			return nil, err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}
