// Package mcp holds what Airlock knows of the Model Context Protocol and
// JSON-RPC 2.0: the error answers the edge and the connector give, and
// (with request-time authorization) strict message parsing.
package mcp

import (
	"encoding/json"
	"net/http"
)

// JSON-RPC error codes Airlock answers with. Except for CodeSessionNotFound,
// which follows the MCP reference SDKs, they sit in Airlock's block of the
// JSON-RPC implementation-defined server error range (-32010 to -32029).
const (
	// CodeSessionNotFound: the Mcp-Session-Id is unknown, expired, belongs
	// to another identity, or its connector is gone. HTTP 404; the client
	// starts a new session (MCP Streamable HTTP, session management).
	CodeSessionNotFound = -32001
	// CodeUnauthenticated: no valid agent credential. HTTP 401.
	CodeUnauthenticated = -32010
	// CodeForbidden: the credential is valid but may not be used here
	// (wrong identity kind, disallowed Origin). HTTP 403.
	CodeForbidden = -32011
	// CodeUnknownResource: no such MCP endpoint. HTTP 404.
	CodeUnknownResource = -32012
	// CodeNoConnector: the resource exists but no connector serves it now.
	// HTTP 503.
	CodeNoConnector = -32013
	// CodeUpstreamFailed: the tunnel or the upstream failed before a
	// response began. HTTP 502.
	CodeUpstreamFailed = -32014
	// CodeBodyTooLarge: the body exceeds the route's limit. HTTP 413.
	CodeBodyTooLarge = -32015
	// CodeInsufficientScope: the access token's scope does not cover the
	// request. HTTP 403 with a Bearer insufficient_scope challenge.
	CodeInsufficientScope = -32016
	// CodeAssertionRefused: the connector refused the edge's identity
	// assertion. HTTP 502 at the agent; it means a misconfigured or
	// impersonated edge.
	CodeAssertionRefused = -32017
	// CodeDenied: the policy denied the request. HTTP 200 for a request
	// (a JSON-RPC error for its id, so the session goes on), 403 for a
	// notification or a response. The message carries the policy's
	// reason; data carries request_id, reasons and policy_revision.
	CodeDenied = -32018
	// CodeBridgeFailed: the agent's bridge (`airlock agent bridge`) could
	// not deliver the request to the edge or read its answer; the message
	// says why. It never comes from the edge itself.
	CodeBridgeFailed = -32019
	// CodeHeaderMismatch: the Mcp-Method or Mcp-Name header disagrees with
	// the body (MCP 2026-07-28). HTTP 400.
	CodeHeaderMismatch = -32020
	// CodeMissingClientCapabilities: the request needs a client capability
	// the client did not declare (MCP 2026-07-28, SEP-2575). HTTP 400.
	CodeMissingClientCapabilities = -32021
	// CodeUnsupportedVersion: the protocol version of the request is not
	// one the server supports (MCP 2026-07-28, SEP-2575). HTTP 400.
	CodeUnsupportedVersion = -32022
	// CodeInvalidRequest is JSON-RPC's own code for a request that is not
	// acceptable as such (for example an HTTP method MCP does not use).
	CodeInvalidRequest = -32600
	// CodeMethodNotFound is JSON-RPC's own code for an unknown method; MCP
	// 2026-07-28 answers it with HTTP 404 (SEP-2575).
	CodeMethodNotFound = -32601
	// CodeInternalError is JSON-RPC's own code for a failure of the
	// answering side itself.
	CodeInternalError = -32603
)

// ErrorBody returns a JSON-RPC 2.0 error response. A nil id encodes as
// null, as JSON-RPC requires when the request id is unknown.
func ErrorBody(id json.RawMessage, code int, message string, data any) []byte {
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}
	if id == nil {
		id = json.RawMessage("null")
	}
	body, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", id, rpcError{code, message, data}})
	if err != nil {
		// Only data can fail to encode; drop it rather than the answer.
		return ErrorBody(id, code, message, nil)
	}
	return body
}

// WriteError writes a JSON-RPC error response with the HTTP status.
func WriteError(w http.ResponseWriter, status int, id json.RawMessage, code int, message string, data any) {
	body := ErrorBody(id, code, message, data)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
