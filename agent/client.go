package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	airmcp "github.com/airlockhq/airlock/pkg/mcp"
)

// Connect opens an MCP session with resource (a name on the profile's
// edge, or an endpoint URL) with the go-sdk client, for commands that make
// a few calls: no standing event stream is opened.
func (a *Agent) Connect(
	ctx context.Context,
	resource string,
	impl *mcp.Implementation,
	opts *mcp.ClientOptions,
) (*mcp.ClientSession, error) {
	transport := &mcp.StreamableClientTransport{
		Endpoint:             a.Endpoint(resource),
		HTTPClient:           a.HTTPClient(),
		DisableStandaloneSSE: true,
	}
	session, err := mcp.NewClient(impl, opts).Connect(ctx, transport, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", transport.Endpoint, err)
	}
	return session, nil
}

// Refused reports whether err is the edge refusing the agent: no valid
// credential, a token scope that does not cover the request, or a policy
// denial. The JSON-RPC error says why.
func Refused(err error) (*jsonrpc.Error, bool) {
	var wire *jsonrpc.Error
	if !errors.As(err, &wire) {
		return nil, false
	}
	switch wire.Code {
	case airmcp.CodeUnauthenticated, airmcp.CodeForbidden, airmcp.CodeInsufficientScope,
		airmcp.CodeDenied:
		return wire, true
	}
	return wire, false
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
