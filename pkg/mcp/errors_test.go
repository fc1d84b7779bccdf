package mcp

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorBody(t *testing.T) {
	tests := []struct {
		name string
		id   json.RawMessage
		data any
		want string
	}{
		{name: "null id", want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32013,"message":"m"}}`},
		{name: "numeric id", id: json.RawMessage("7"), want: `{"jsonrpc":"2.0","id":7,"error":{"code":-32013,"message":"m"}}`},
		{name: "with data", id: json.RawMessage(`"a"`), data: map[string]string{"request_id": "r1"},
			want: `{"jsonrpc":"2.0","id":"a","error":{"code":-32013,"message":"m","data":{"request_id":"r1"}}}`},
		{name: "unencodable data dropped", data: func() {}, want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32013,"message":"m"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(ErrorBody(tt.id, CodeNoConnector, "m", tt.data))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ErrorBody() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 503, nil, CodeNoConnector, "no connector", nil)
	if rec.Code != 503 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("WriteError() status %d type %q, want 503 application/json", rec.Code, rec.Header().Get("Content-Type"))
	}
}
