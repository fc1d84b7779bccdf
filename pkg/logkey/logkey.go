// Package logkey holds the attribute keys that every Airlock component uses
// in its structured logs, so that one event reads the same everywhere.
package logkey

// Attribute keys for log/slog records. Keep them snake_case and add new keys
// here rather than spelling them inline.
const (
	Component       = "component"
	AgentID         = "agent_id"
	ConnectorID     = "connector_id"
	ConnectorName   = "connector_name"
	ConnID          = "conn_id"
	Instance        = "instance"
	RequestID       = "request_id"
	Resource        = "resource"
	Resources       = "resources"
	MCPMethod       = "mcp_method"
	MCPTool         = "mcp_tool"
	MCPSession      = "mcp_session"
	Decision        = "decision"
	PolicyRule      = "policy_rule"
	Reason          = "reason"
	CertFingerprint = "cert_fingerprint"
	CertSerial      = "cert_serial"
	CertNotAfter    = "cert_not_after"
	Identity        = "identity"
	Edge            = "edge"
	RemoteAddr      = "remote_addr"
	Addr            = "addr"
	Status          = "status"
	Duration        = "duration"
	Attempt         = "attempt"
	Backoff         = "backoff"
	InFlight        = "in_flight"
	Upstream        = "upstream"
	TimeLeft        = "time_left"
	Kind            = "kind"
	TokenID         = "token_id"
	KeyID           = "kid"
	Alg             = "alg"
	Scope           = "scope"
	Expires         = "expires"
	Error           = "error"
)
