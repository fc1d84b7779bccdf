// Package audit writes one record per authorization decision as a line
// of JSON to an append-only file, and reads them back for `airlock admin
// audit tail`. Arguments are recorded after redaction.
package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Record is one decision.
type Record struct {
	Time           time.Time      `json:"time"`
	RequestID      string         `json:"request_id"`
	Agent          string         `json:"agent"`
	Resource       string         `json:"resource"`
	Connector      string         `json:"connector,omitempty"`
	MCPVersion     string         `json:"mcp_version,omitempty"`
	Session        string         `json:"session,omitempty"`
	Direction      string         `json:"direction"`
	Kind           string         `json:"kind"`
	Method         string         `json:"method,omitempty"`
	Target         string         `json:"target,omitempty"`
	Arguments      map[string]any `json:"arguments,omitempty"`
	Decision       string         `json:"decision"`
	Reason         string         `json:"reason,omitempty"`
	PolicyRevision string         `json:"policy_revision,omitempty"`
	TokenID        string         `json:"token_id,omitempty"`
	Plugins        []string       `json:"plugins,omitempty"`
	LatencyMicros  int64          `json:"latency_us"`
}

// Redacted is what the value of a redacted argument becomes: every
// argument, at any depth, whose key is one of the redaction keys
// (compared ignoring case).
const Redacted = "[redacted]"

// DefaultRedact are the argument keys redacted when the config names
// none.
var DefaultRedact = []string{
	"password", "passwd", "secret", "token", "api_key", "apikey",
	"authorization", "private_key", "credentials",
}

// Log appends records to a file. It is safe for concurrent use.
type Log struct {
	redact []string

	// mu guards f.
	mu sync.Mutex
	f  *os.File
}

// Open opens (creating, mode 0600) the audit file for appending.
func Open(path string, redact []string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit file: %w", err)
	}
	lower := make([]string, len(redact))
	for i, k := range redact {
		lower[i] = strings.ToLower(k)
	}
	return &Log{redact: lower, f: f}, nil
}

// Write appends one record and flushes it to the file before it returns,
// so that a decision is on disk before the request goes on. An error
// means the record is lost; the caller decides whether to deny.
func (l *Log) Write(r Record) error {
	r.Arguments = l.redactMap(r.Arguments)
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("writing audit record: the audit log is closed")
	}
	// One write per record, so that a failure loses this record only and
	// the next write starts clean (no buffer keeps a half line or an old
	// error); O_APPEND keeps records whole between writers.
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing audit record: %w", err)
	}
	return nil
}

func (l *Log) redactMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if slices.Contains(l.redact, strings.ToLower(k)) {
			out[k] = Redacted
			continue
		}
		out[k] = l.redactValue(v)
	}
	return out
}

func (l *Log) redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return l.redactMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = l.redactValue(e)
		}
		return out
	}
	return v
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Tail reads the records of the file at path that start at byte offset
// from (0: the beginning; negative: the last -from records), and returns
// them with the offset to continue from.
func Tail(path string, from int64) ([]Record, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("opening audit file: %w", err)
	}
	defer f.Close()
	start := max(from, 0)
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil, 0, err
	}
	var recs []Record
	offset := start
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var r Record
			if json.Unmarshal(line, &r) == nil {
				recs = append(recs, r)
			}
			offset += int64(len(line))
		}
		if err != nil {
			break
		}
	}
	if from < 0 && int64(len(recs)) > -from {
		recs = recs[len(recs)+int(from):]
	}
	return recs, offset, nil
}
