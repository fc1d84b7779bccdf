package plugin

import (
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// echoTwice is a plugin that answers its first call twice, the second
// time with a deny; later calls get one answer each.
type echoTwice struct{}

func serveEchoTwice(_ any, stream grpc.ServerStream) error {
	for first := true; ; first = false {
		var req laneRequest
		if err := stream.RecvMsg(&req); err != nil {
			return nil
		}
		allow := &laneResponse{Seq: req.Seq, Verdict: &Verdict{Verdict: Allow}}
		if err := stream.SendMsg(allow); err != nil {
			return err
		}
		if first {
			stale := &laneResponse{Seq: req.Seq, Verdict: &Verdict{Verdict: Deny, Reason: "stale"}}
			if err := stream.SendMsg(stale); err != nil {
				return err
			}
		}
	}
}

// TestLaneRefusesAnotherCallsAnswer: an answer that carries another
// call's number is an error, and its lane is not used again.
func TestLaneRefusesAnotherCallsAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: laneStream, Handler: serveEchoTwice,
			ServerStreams: true, ClientStreams: true}},
	}, echoTwice{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	conn, err := grpc.NewClient(ln.Addr().String(), plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{conn: conn}
	t.Cleanup(c.close)

	ctx := t.Context()
	resp, err := c.exchange(ctx, &laneRequest{Method: "Decide"})
	if err != nil || resp.Verdict == nil || resp.Verdict.Verdict != Allow {
		t.Fatalf("first call = %+v, %v; want allow", resp, err)
	}
	// The second call gets the first call's second answer on the same lane.
	resp, err = c.exchange(ctx, &laneRequest{Method: "Decide"})
	if err == nil || !strings.Contains(err.Error(), "answered call 1 of its lane, not call 2") {
		t.Fatalf("second call = %+v, %v; want the stale answer refused", resp, err)
	}
	if len(c.idle) != 0 {
		t.Errorf("%d idle lanes after a wrong answer, want the lane closed", len(c.idle))
	}
	// A new lane serves the next call.
	resp, err = c.exchange(ctx, &laneRequest{Method: "Decide"})
	if err != nil || resp.Verdict.Verdict != Allow {
		t.Errorf("third call = %+v, %v; want allow on a new lane", resp, err)
	}
}
