// Package plugin runs policy plugins: separate processes, started and
// checked by hashicorp/go-plugin, spoken to over gRPC with mutual TLS
// (AutoMTLS). A plugin sees the same input document as the policy and
// can add attributes to input.context before the policy runs (Enrich),
// and veto what the policy allowed (Decide). It can never allow what the
// policy denied.
//
// Plugin authors import this package and call [Serve]; the edge uses
// [Host]. docs/plugins.md is the author's guide.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	hplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// Handshake is what host and plugin must agree on before anything else:
// a plugin built for another protocol version, or a program that is not
// a plugin at all, is refused.
var Handshake = hplugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "AIRLOCK_PLUGIN",
	MagicCookieValue: "policy-v1",
}

// pluginName is the name under which the plugin is dispensed.
const pluginName = "airlock"

// Verdicts a plugin answers.
const (
	Allow   = "allow"
	Deny    = "deny"
	Abstain = "abstain"
)

// Description says what a plugin does.
type Description struct {
	// Name identifies the plugin in logs and audit records.
	Name string `json:"name"`
	// Enrich is true for plugins that add attributes to input.context.
	Enrich bool `json:"enrich"`
	// Decide is true for plugins that judge requests the policy allowed.
	Decide bool `json:"decide"`
}

// PolicyDecision is the policy's decision, as a plugin sees it.
type PolicyDecision struct {
	Allow  bool     `json:"allow"`
	Deny   []string `json:"deny,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Verdict is a plugin's answer to Decide.
type Verdict struct {
	// Verdict is Allow, Deny or Abstain; anything else counts as Deny.
	Verdict string `json:"verdict"`
	// Reason is what the agent is told for a Deny.
	Reason string `json:"reason,omitempty"`
}

type empty struct{}

// jsonCodec carries the messages as JSON: the plugin protocol is small and
// its messages are documents already, so no generated protobuf code is
// needed on either side.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

func init() { encoding.RegisterCodec(jsonCodec{}) }

const serviceName = "airlock.plugin.v1.Plugin"

// impl is what a plugin implements; see [Plugin].
type impl interface {
	Describe(ctx context.Context) (Description, error)
	Enrich(ctx context.Context, input map[string]any) (map[string]any, error)
	Decide(ctx context.Context, input map[string]any, policy PolicyDecision) (Verdict, error)
}

// serviceDesc describes the plugin service by hand, for the JSON codec.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*impl)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Describe", Handler: func(
			srv any,
			ctx context.Context,
			dec func(any) error,
			_ grpc.UnaryServerInterceptor,
		) (any, error) {
			var req empty
			if err := dec(&req); err != nil {
				return nil, err
			}
			return srv.(impl).Describe(ctx)
		}},
	},
	Streams: []grpc.StreamDesc{laneDesc},
}

// The plugin connection carries small calls on long-lived streams (see
// lane.go), so it is tuned for the latency of a call:
//   - fixed flow-control windows of 1 MiB, larger than nearly every input
//     document, turn off gRPC's bandwidth estimator, which otherwise
//     answers data with a ping (a larger message waits for a window
//     update, nothing more);
//   - no retries, since a failed call is a deny and is never sent twice,
//     which also spares each call the copy kept for a retry.
const window = 1 << 20

var (
	dialOptions = []grpc.DialOption{
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window),
		grpc.WithDisableRetry(),
	}
	serverOptions = []grpc.ServerOption{
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
	}
)

// grpcPlugin is the go-plugin glue on both sides.
type grpcPlugin struct {
	hplugin.NetRPCUnsupportedPlugin
	impl impl // set on the plugin's side
}

func (p *grpcPlugin) GRPCServer(_ *hplugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&serviceDesc, p.impl)
	return nil
}

func (p *grpcPlugin) GRPCClient(
	_ context.Context,
	_ *hplugin.GRPCBroker,
	c *grpc.ClientConn,
) (any, error) {
	return &client{conn: c}, nil
}

// client calls a plugin process.
type client struct {
	conn *grpc.ClientConn

	mu     sync.Mutex
	idle   []*lane // lanes ready for a call
	closed bool
}

func (c *client) call(ctx context.Context, method string, req, resp any) error {
	fullMethod := "/" + serviceName + "/" + method
	err := c.conn.Invoke(ctx, fullMethod, req, resp, grpc.CallContentSubtype("json"))
	if err != nil {
		return fmt.Errorf("calling %s: %w", method, err)
	}
	return nil
}

// Serve runs p as a plugin process until the edge stops it. Call it from
// the plugin's main.
// It runs the Go runtime on as many processors as the edge's configuration
// says (procs, default 1).
func Serve(p Plugin) {
	if n, err := strconv.Atoi(os.Getenv(procsEnv)); err == nil && n > 0 {
		runtime.GOMAXPROCS(n)
	}
	hplugin.Serve(&hplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         hplugin.PluginSet{pluginName: &grpcPlugin{impl: adapter{p}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, serverOptions...)...)
		},
	})
}

// procsEnv carries a plugin's procs setting to its process.
const procsEnv = "AIRLOCK_PLUGIN_PROCS"

// Plugin is what a plugin author implements. Methods may be called
// concurrently. Enrich is called only if Describe says Enrich, Decide
// only if it says Decide; every call has a deadline in ctx (250 ms by
// default), after which the edge denies the request anyway.
type Plugin interface {
	// Describe names the plugin and what it does; called once at start.
	Describe() Description
	// Enrich returns attributes for input.context["<plugin name>"].
	Enrich(ctx context.Context, input map[string]any) (map[string]any, error)
	// Decide judges a request the policy allowed: Allow, Deny (with a
	// reason the agent sees) or Abstain. An error counts as Deny.
	Decide(ctx context.Context, input map[string]any, policy PolicyDecision) (Verdict, error)
}

// adapter serves a Plugin.
type adapter struct{ p Plugin }

func (a adapter) Describe(context.Context) (Description, error) { return a.p.Describe(), nil }
func (a adapter) Enrich(ctx context.Context, in map[string]any) (map[string]any, error) {
	return a.p.Enrich(ctx, in)
}
func (a adapter) Decide(ctx context.Context, in map[string]any, d PolicyDecision) (Verdict, error) {
	return a.p.Decide(ctx, in, d)
}
