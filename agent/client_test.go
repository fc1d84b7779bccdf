package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

func TestRefusalAndUnreachable(t *testing.T) {
	denied := &jsonrpc.Error{Code: mcp.CodeDenied, Message: "denied by policy: no",
		Data: []byte(`{"request_id":"r-1"}`)}
	tests := []struct {
		name        string
		err         error
		wantCode    int
		wantMsg     string
		unreachable bool
	}{
		{"policy denial", fmt.Errorf("calling: %w", denied), mcp.CodeDenied, "denied by policy: no (request r-1)", false},
		{"scope", &jsonrpc.Error{Code: mcp.CodeInsufficientScope, Message: "needs x"}, mcp.CodeInsufficientScope, "needs x", false},
		{"tool error code", &jsonrpc.Error{Code: -32602, Message: "bad params"}, 0, "", false},
		{"token endpoint scope", &url.Error{Op: "Post", Err: &token.FetchError{Status: 400,
			ErrorResponse: token.ErrorResponse{Error: "invalid_scope", Description: "too wide"}}},
			mcp.CodeInsufficientScope, "too wide", false},
		{"token endpoint refusal", &token.FetchError{Status: 401,
			ErrorResponse: token.ErrorResponse{Error: "invalid_client"}}, mcp.CodeUnauthenticated, "invalid_client", false},
		{"certificate refused", &net.OpError{Op: "remote error", Err: tls.AlertError(42)},
			mcp.CodeUnauthenticated, "refused the agent's certificate", false},
		{"connection refused", &url.Error{Op: "Post", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}},
			0, "", true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "edge.invalid"}, 0, "", true},
		{"other", errors.New("boom"), 0, "", false},
	}
	for _, tt := range tests {
		code, msg, ok := Refusal(tt.err)
		if ok != (tt.wantCode != 0) || code != tt.wantCode || !strings.Contains(msg, tt.wantMsg) {
			t.Errorf("%s: Refusal = %d %q %t, want %d %q", tt.name, code, msg, ok, tt.wantCode, tt.wantMsg)
		}
		if got := Unreachable(tt.err); got != tt.unreachable {
			t.Errorf("%s: Unreachable = %t, want %t", tt.name, got, tt.unreachable)
		}
	}
}
