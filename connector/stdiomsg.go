package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// message is one JSON-RPC 2.0 message between an MCP client and a stdio
// process, with the few fields the bridge routes by. raw is what is
// passed on.
type message struct {
	raw    []byte
	id     json.RawMessage // nil for a notification
	method string
	params json.RawMessage
	result bool
	error  bool
}

// parseMessage reads one JSON-RPC message and compacts it onto one line.
// Batches are refused: MCP 2025-06-18 dropped them, and the edge refuses
// them before they get here.
func parseMessage(b []byte) (*message, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, errors.New("the body is not JSON")
	}
	raw := buf.Bytes()
	if len(raw) > 0 && raw[0] == '[' {
		return nil, errors.New("JSON-RPC batches are not supported")
	}
	var env struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.JSONRPC != "2.0" {
		return nil, errors.New("the body is not a JSON-RPC 2.0 message")
	}
	m := &message{
		raw:    raw,
		id:     env.ID,
		method: env.Method,
		params: env.Params,
		result: env.Result != nil,
		error:  env.Error != nil,
	}
	if m.method == "" && (m.id == nil || !m.result && !m.error) {
		return nil, errors.New("the body is neither a request, a notification nor a response")
	}
	return m, nil
}

func (m *message) isRequest() bool      { return m.method != "" && m.id != nil }
func (m *message) isNotification() bool { return m.method != "" && m.id == nil }
func (m *message) isResponse() bool     { return m.method == "" }
func (m *message) isError() bool        { return m.isResponse() && m.error }

// progressToken returns the key of params._meta.progressToken, or "".
func (m *message) progressToken() string {
	var p struct {
		Meta struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
		ProgressToken json.RawMessage `json:"progressToken"`
	}
	if json.Unmarshal(m.params, &p) != nil {
		return ""
	}
	if m.isNotification() {
		// notifications/progress names the token in its params.
		return idKey(p.ProgressToken)
	}
	return idKey(p.Meta.ProgressToken)
}

// meta returns params._meta[key] as raw JSON, or nil.
func (m *message) meta(key string) json.RawMessage {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(m.params, &p) != nil {
		return nil
	}
	return p.Meta[key]
}

// idKey maps a JSON-RPC id (or progress token) to a key that does not
// depend on how the peer spelled it: "s" and the string, or "n" and the
// number. Anything else gives "".
func idKey(id json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return "s" + v
	case json.Number:
		if f, err := v.Float64(); err == nil && f == float64(int64(f)) {
			return "n" + strconv.FormatInt(int64(f), 10)
		}
		return "n" + v.String()
	}
	return ""
}

// errorCode returns the code of an error response, or 0.
func (m *message) errorCode() int {
	var e struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if !m.isError() || json.Unmarshal(m.raw, &e) != nil {
		return 0
	}
	return e.Error.Code
}

// errorMessage returns the message of an error response, or "".
func (m *message) errorMessage() string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if !m.isError() || json.Unmarshal(m.raw, &e) != nil {
		return ""
	}
	return e.Error.Message
}
