package edge

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/plugin"
	"github.com/airlockhq/airlock/pkg/policy"
)

// policyTimeout bounds one decision: a policy that calls out (http.send)
// or loops does not hold a request; past it the request is denied.
const policyTimeout = time.Second

// InputVersion is the version of the policy input document; docs/policy.md
// describes it. It changes only when a field changes meaning or goes away.
const InputVersion = 1

// Message kinds in input.mcp.kind.
const (
	kindRequest      = "request"
	kindNotification = "notification"
	kindResponse     = "response"
	kindStream       = "stream" // GET: open the server's stream
	kindEnd          = "end"    // DELETE: end the session
)

// decide asks the policy about the request and answers a denial. Every
// decision writes one audit record.
func (e *Edge) decide(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	start := time.Now()
	d, allowed, msg := e.evaluate(r, x)
	allowed, msg = e.audit(r, x, "client_to_server", allowed, msg, d.Revision, time.Since(start))
	if !allowed && len(d.Deny) == 0 && msg != d.Message() {
		d.Deny = []string{msg}
	}
	if allowed {
		return true
	}
	if len(d.Deny) == 0 && d.Reason == "" {
		d.Deny = []string{msg}
	}
	reasons := d.Deny
	if reasons == nil {
		reasons = []string{}
	}
	data := map[string]any{"request_id": x.id, "reasons": reasons, "policy_revision": d.Revision}
	// A request gets its answer like any JSON-RPC error, so that the
	// session goes on; a notification or a response has no id to answer.
	if x.msgID != nil {
		x.status = http.StatusOK
		mcp.WriteError(w, http.StatusOK, x.msgID, mcp.CodeDenied, "denied by policy: "+msg, data)
		return false
	}
	x.status = http.StatusForbidden
	mcp.WriteError(w, http.StatusForbidden, nil, mcp.CodeDenied, "denied by policy: "+msg, data)
	return false
}

// evaluate runs the plugins that enrich the input, the policy, and the
// plugins that judge what the policy allowed. Any failure denies.
func (e *Edge) evaluate(r *http.Request, x *exchange) (policy.Decision, bool, string) {
	ctx, cancel := context.WithTimeout(r.Context(), policyTimeout)
	defer cancel()
	input := e.policyInput(r, x)
	var pluginTime time.Duration
	if e.plugins.Len() > 0 {
		start := time.Now()
		attrs, err := e.plugins.Enrich(ctx, input)
		pluginTime = time.Since(start)
		if err != nil {
			e.metrics.pluginErrors.Inc()
			x.plugins = []string{err.Error()}
			return policy.Decision{}, false,
				"a plugin could not enrich this request, so it is denied"
		}
		input["context"] = attrs
	}
	start := time.Now()
	d, err := e.policy.Eval(ctx, input)
	e.metrics.policyEval.Observe(time.Since(start).Seconds())
	if err != nil {
		e.metrics.policyErrors.Inc()
		e.logger.ErrorContext(ctx, "policy evaluation failed",
			logkey.RequestID, x.id, logkey.Error, err)
		return d, false, "the policy could not decide this request, so it is denied"
	}
	if !d.Allowed() {
		return d, false, d.Message()
	}
	if e.plugins.Len() == 0 {
		return d, true, ""
	}
	start = time.Now()
	decided := plugin.PolicyDecision{Allow: d.Allow, Deny: d.Deny, Reason: d.Reason}
	o := e.plugins.Decide(ctx, input, decided)
	e.metrics.pluginTime.Observe((pluginTime + time.Since(start)).Seconds())
	x.plugins = o.Verdicts
	if o.Denied {
		d.Deny = []string{o.Reason}
		return d, false, o.Reason
	}
	return d, true, ""
}

// audit writes the decision record: one per authorization decision, in
// the audit file and on the access logger. A record the file cannot take
// turns an allow into a deny (unless audit_fail_open), and the log says
// what was decided in the end. It returns the final decision and reason.
func (e *Edge) audit(
	r *http.Request,
	x *exchange,
	direction string,
	allowed bool,
	reason, revision string,
	took time.Duration,
) (bool, string) {
	if e.auditLog != nil {
		decision := "deny"
		if allowed {
			decision = "allow"
		}
		rec := audit.Record{
			Time: time.Now().UTC(), RequestID: x.id, Agent: x.agent.String(), Resource: x.resource,
			Connector: x.connector, MCPVersion: r.Header.Get("Mcp-Protocol-Version"),
			Session: r.Header.Get(headerSession), Direction: direction,
			Kind: x.kind, Method: x.method, Target: x.target, Arguments: arguments(x),
			Decision: decision, Reason: reasonIf(!allowed, reason),
			PolicyRevision: revision, TokenID: x.tokenID,
			LatencyMicros: took.Microseconds(), Plugins: x.plugins,
		}
		if err := e.auditLog.Write(rec); err != nil {
			e.metrics.auditErrors.Inc()
			e.logger.ErrorContext(r.Context(), "audit record lost",
				logkey.RequestID, x.id, logkey.Error, err)
			if allowed && !e.cfg.AuditFailOpen {
				allowed, reason = false,
					"the decision could not be written to the audit log, so the request is denied"
			}
		}
	}
	decision := "deny"
	if allowed {
		decision = "allow"
	}
	e.metrics.decisions.WithLabelValues(x.resource, mcpMethodLabel(x.method), decision).Inc()
	e.access.LogAttrs(r.Context(), slog.LevelInfo, "decision",
		slog.String(logkey.Decision, decision),
		slog.String(logkey.RequestID, x.id),
		slog.String(logkey.AgentID, x.agent.String()),
		slog.String(logkey.Resource, x.resource),
		slog.String(logkey.MCPMethod, x.method),
		slog.String(logkey.MCPTool, x.target),
		slog.String(logkey.Reason, reasonIf(!allowed, reason)),
		slog.String(logkey.Revision, revision),
		slog.String(logkey.TokenID, x.tokenID),
		slog.Duration(logkey.Duration, took),
	)
	return allowed, reason
}

func reasonIf(denied bool, reason string) string {
	if denied {
		return reason
	}
	return ""
}

// arguments returns the arguments of a tools/call or prompts/get, for the
// audit record (which redacts them).
func arguments(x *exchange) map[string]any {
	if x.method != "tools/call" && x.method != "prompts/get" {
		return nil
	}
	args, _ := x.params["arguments"].(map[string]any)
	return args
}

// policyInput builds the input document (docs/policy.md).
func (e *Edge) policyInput(r *http.Request, x *exchange) map[string]any {
	return map[string]any{
		"version": InputVersion,
		"agent":   e.agentInput(x),
		"resource": map[string]any{
			"name":       x.resource,
			"connector":  x.connector,
			"connectors": e.resources[x.resource].Connectors,
		},
		"mcp": mcpInput(r, x),
		"http": map[string]any{
			"method":      r.Method,
			"path":        r.URL.Path,
			"remote_addr": r.RemoteAddr,
			"headers":     selectedHeaders(r.Header),
		},
		"time": map[string]any{
			"now":  time.Now().UTC().Format(time.RFC3339Nano),
			"unix": time.Now().Unix(),
		},
		"context": map[string]any{},
	}
}

func (e *Edge) agentInput(x *exchange) map[string]any {
	tok := map[string]any{"jti": x.tokenID, "scope": x.scope.String(), "scopes": scopeStrings(x)}
	if x.claims != nil {
		tok["expires"] = x.claims.ExpiresAt.Unix()
		tok["issued"] = x.claims.IssuedAt.Unix()
	}
	return map[string]any{
		"id":   x.agent.String(),
		"name": x.agent.Name,
		"certificate": map[string]any{
			"serial":      x.leaf.SerialNumber.String(),
			"fingerprint": certs.Fingerprint(x.leaf),
			"not_after":   x.leaf.NotAfter.UTC().Format(time.RFC3339),
		},
		"token": tok,
	}
}

func scopeStrings(x *exchange) []any {
	out := make([]any, len(x.scope))
	for i, item := range x.scope {
		out[i] = item.String()
	}
	return out
}

// mcpInput describes the MCP message: its kind, method, id and target,
// and the whole params for rules that need more.
func mcpInput(r *http.Request, x *exchange) map[string]any {
	m := map[string]any{
		"version":   r.Header.Get("Mcp-Protocol-Version"),
		"session":   r.Header.Get(headerSession),
		"kind":      x.kind,
		"method":    x.method,
		"listing":   false,
		"direction": "client_to_server",
	}
	if x.msgID != nil {
		var id any
		json.Unmarshal(x.msgID, &id)
		m["id"] = id
	}
	params := x.params
	if params == nil {
		params = map[string]any{}
	}
	m["params"] = params
	switch x.method {
	case "tools/call", "prompts/get":
		target := "tool"
		if x.method == "prompts/get" {
			target = "prompt"
		}
		m[target] = x.target
		args := arguments(x)
		if args == nil {
			args = map[string]any{}
		}
		m["arguments"] = args
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		m["uri"] = x.target
	}
	return m
}

// selectedHeaders are the request headers a policy may read: none that
// carries a credential.
func selectedHeaders(h http.Header) map[string]any {
	out := map[string]any{}
	names := []string{
		"User-Agent", "Origin", "Mcp-Protocol-Version", "Mcp-Session-Id", "Mcp-Method", "Mcp-Name",
	}
	for _, k := range names {
		if v := h.Get(k); v != "" {
			out[http.CanonicalHeaderKey(k)] = v
		}
	}
	return out
}
