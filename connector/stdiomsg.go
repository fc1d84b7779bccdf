package connector

import (
	"bytes"
	"encoding/json"
	"errors"
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

// errNotJSON is what [parseMessage] returns for a body that is not JSON
// at all (JSON-RPC's parse error), as opposed to JSON that is not a
// JSON-RPC message (an invalid request).
var errNotJSON = errors.New("the body is not JSON")

// parseMessage reads one JSON-RPC message and compacts it onto one line.
// Batches are refused: MCP 2025-06-18 dropped them, and the edge refuses
// them before they get here. A body that is not JSON gives [errNotJSON].
func parseMessage(b []byte) (*message, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, errNotJSON
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
// depend on how the peer escaped a string: "s" and the string, or "n"
// and the number's literal. The literal is kept exactly, so that integers
// beyond 2^53 stay distinct; only "-0" becomes "0". Numbers spelled
// differently (1 and 1.0) get different keys. Anything else gives "".
func idKey(id json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return ""
	}
	switch v := v.(type) {
	case string:
		return "s" + v
	case json.Number:
		if v == "-0" {
			return "n0"
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

// protocolVersion returns the revision a request names in
// params._meta["io.modelcontextprotocol/protocolVersion"] (MCP
// 2026-07-28), or "" if it names none or not as a string.
func (m *message) protocolVersion() string {
	var v string
	if json.Unmarshal(m.meta(metaProtocolVersion), &v) != nil {
		return ""
	}
	return v
}

// Keys of a request's params._meta that MCP 2026-07-28 defines for
// requests without a session (SEP-2575).
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
)

// knownRevisions are the MCP revisions the bridge knows, oldest first.
var knownRevisions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"}
