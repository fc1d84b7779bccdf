package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	airmcp "github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

// Connect opens an MCP session with resource (a name on the profile's
// edge, or an https endpoint URL) with the go-sdk client, for commands
// that make a few calls: no standing event stream is opened.
func (a *Agent) Connect(
	ctx context.Context,
	resource string,
	impl *mcp.Implementation,
	opts *mcp.ClientOptions,
) (*mcp.ClientSession, error) {
	endpoint, err := a.Endpoint(resource)
	if err != nil {
		return nil, err
	}
	transport := &mcp.StreamableClientTransport{
		Endpoint:             endpoint,
		HTTPClient:           a.HTTPClient(),
		DisableStandaloneSSE: true,
	}
	session, err := mcp.NewClient(impl, opts).Connect(ctx, transport, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	return session, nil
}

// Refusal reports whether err is the edge refusing the agent, and says
// so as a JSON-RPC error code and message: a JSON-RPC error with a
// refusal code (no valid credential, a scope that does not cover the
// request, a policy denial; its request id appended), an access token the
// token endpoint would not give, or a certificate refused in the TLS
// handshake.
func Refusal(err error) (code int, message string, ok bool) {
	var wire *jsonrpc.Error
	var fetch *token.FetchError
	var alert tls.AlertError
	switch {
	case errors.As(err, &wire):
		switch wire.Code {
		case airmcp.CodeUnauthenticated, airmcp.CodeForbidden, airmcp.CodeInsufficientScope,
			airmcp.CodeDenied:
			var data struct {
				RequestID string `json:"request_id"`
			}
			json.Unmarshal(wire.Data, &data)
			message = wire.Message
			if data.RequestID != "" {
				message += " (request " + data.RequestID + ")"
			}
			return int(wire.Code), message, true
		}
	case errors.As(err, &fetch):
		code = airmcp.CodeUnauthenticated
		if fetch.ErrorResponse.Error == "invalid_scope" {
			code = airmcp.CodeInsufficientScope
		}
		return code, "the edge would not give an access token: " + fetch.Error(), true
	case errors.As(err, &alert):
		return airmcp.CodeUnauthenticated, fmt.Sprintf("the edge refused the agent's certificate "+
			"in the TLS handshake (%v): it may be revoked or expired; see `airlock agent status`",
			alert), true
	}
	return 0, "", false
}

// Unreachable reports whether err is a failure to reach the edge at all:
// nothing listens, the name does not resolve, the network is down.
func Unreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	var uerr *url.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.As(err, &dns):
		return true
	case errors.As(err, &op) && op.Op == "dial":
		return true
	case errors.As(err, &uerr) && uerr.Timeout():
		return true
	}
	return false
}
