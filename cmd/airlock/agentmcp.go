package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/agent"
	"github.com/airlockhq/airlock/pkg/logkey"
)

// Exit statuses of the agent's MCP commands (docs/agents.md).
const (
	exitFailed      = 1 // any other error, or a tool that reported an error
	exitDenied      = 3 // the edge refused: credential, scope or policy
	exitUnreachable = 4 // the edge could not be reached
)

// exitError carries an exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode returns the exit status for a command's error.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errDenied):
		return exitDenied
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailed
}

// classify gives an MCP call's error its exit status and says it plainly.
func classify(err error, timeout time.Duration) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	if code, msg, ok := agent.Refusal(err); ok {
		return &exitError{exitDenied, fmt.Errorf("denied (%d): %s", code, msg)}
	}
	if agent.Unreachable(err) {
		return &exitError{exitUnreachable, fmt.Errorf("cannot reach the edge: %w", err)}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &exitError{exitFailed, fmt.Errorf("no answer within --timeout %s", timeout)}
	}
	return &exitError{exitFailed, err}
}

// errExpired ends a bridge or a proxy whose certificate expired.
var errExpired = errors.New("the agent's certificate expired and could not be renewed: " +
	"enroll the profile again with a new join token")

// expiring returns a context that ends with errExpired as its cause
// when the agent's certificate expires, and with nil when ctx ends.
func expiring(ctx context.Context, a *agent.Agent) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-a.Expired():
			cancel(errExpired)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// expiredErr returns errExpired if that is why ctx ended.
func expiredErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errExpired) {
		return errExpired
	}
	return nil
}

// agentFlags are the flags every agent MCP command takes.
type agentFlags struct {
	profile string
	scope   string
	json    bool
	timeout time.Duration
}

func (f *agentFlags) register(cmd *cobra.Command, output bool) {
	cmd.Flags().StringVar(&f.profile, "profile", "", "the agent profile folder (required)")
	cmd.Flags().StringVar(&f.scope, "scope", "",
		"narrow the access token, e.g. mcp:demo:tools/call:read_file")
	cmd.MarkFlagRequired("profile")
	if output {
		cmd.Flags().BoolVar(&f.json, "json", false, "print the MCP result as JSON, for scripts")
		cmd.Flags().DurationVar(&f.timeout, "timeout", 60*time.Second, "give up after this long")
	}
}

// run opens the profile and an MCP session with resource, all within
// --timeout, calls use with the session, and gives what fails its exit
// status.
func (f *agentFlags) run(
	cmd *cobra.Command,
	g *globalFlags,
	resource string,
	use func(ctx context.Context, s *mcp.ClientSession) error,
) error {
	logger, err := g.logger()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	a, err := agent.Open(ctx, f.profile, agent.Options{Scope: f.scope, Logger: logger})
	if err != nil {
		return err
	}
	defer a.Close()
	impl := &mcp.Implementation{Name: "airlock-agent-cli", Version: version}
	s, err := a.Connect(ctx, resource, impl, nil)
	if err != nil {
		return classify(err, f.timeout)
	}
	defer s.Close()
	if err := use(ctx, s); err != nil {
		return classify(err, f.timeout)
	}
	return nil
}

func newAgentBridgeCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "bridge --profile DIR RESOURCE",
		Short: "Serve an Airlock MCP resource over stdio, for MCP clients that launch servers",
		Long: "A stdio MCP server that forwards every message to the edge's MCP endpoint for\n" +
			"RESOURCE with the agent's certificate and an access token it fetches, refreshes\n" +
			"and narrows by itself, renewing the certificate when due. The edge decides each\n" +
			"request; denials arrive as the MCP errors the edge sent. Configure an MCP client\n" +
			"to launch it as a command (docs/agents.md). Logs go to stderr.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			a, err := agent.Open(cmd.Context(), f.profile,
				agent.Options{Scope: f.scope, Logger: logger, Renew: true})
			if err != nil {
				return err
			}
			defer a.Close()
			endpoint, err := a.Endpoint(args[0])
			if err != nil {
				return err
			}
			ctx, stop := expiring(cmd.Context(), a)
			defer stop()
			b := &agent.Bridge{Endpoint: endpoint, Client: a.HTTPClient(), Logger: logger}
			logger.Info("bridge ready", logkey.Resource, endpoint,
				logkey.Identity, a.Holder().Identity().String())
			if err := b.Run(ctx, cmd.InOrStdin(), cmd.OutOrStdout()); err != nil {
				return err
			}
			return expiredErr(ctx)
		},
	}
	f.register(cmd, false)
	return cmd
}

func newAgentProxyCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	var listen string
	var resources []string
	cmd := &cobra.Command{
		Use:   "proxy --profile DIR --listen 127.0.0.1:PORT [--resource NAME ...]",
		Short: "Serve Airlock MCP resources on a loopback port, for clients without a certificate",
		Long: "A local Streamable HTTP endpoint per resource, http://127.0.0.1:PORT/mcp/NAME,\n" +
			"that forwards to the edge with the agent's certificate and access token. It\n" +
			"listens on loopback only, answers only loopback Host and Origin values, and\n" +
			"drops any Authorization the local client sends.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			a, err := agent.Open(cmd.Context(), f.profile,
				agent.Options{Scope: f.scope, Logger: logger, Renew: true})
			if err != nil {
				return err
			}
			defer a.Close()
			p := &agent.Proxy{EdgeURL: a.Holder().EdgeURL(), Client: a.HTTPClient(),
				Resources: resources, Logger: logger}
			h, err := p.Handler()
			if err != nil {
				return err
			}
			ln, err := agent.ListenLoopback(listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			base := "http://" + ln.Addr().String() + "/mcp/"
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "proxy for %s on %s\n", a.Holder().Identity(), ln.Addr())
			if len(resources) == 0 {
				fmt.Fprintf(w, "  %sRESOURCE\n", base)
			}
			for _, r := range resources {
				fmt.Fprintf(w, "  %s%s\n", base, r)
			}
			ctx, stop := expiring(cmd.Context(), a)
			defer stop()
			go func() {
				<-ctx.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return expiredErr(ctx)
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8750", "loopback address to serve on")
	cmd.Flags().StringSliceVar(&resources, "resource", nil,
		"serve only these resources (default: any the edge has)")
	return cmd
}

func newAgentToolsCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "tools --profile DIR RESOURCE",
		Short: "List the tools of an MCP resource that this agent may use",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, g, args[0], func(ctx context.Context, s *mcp.ClientSession) error {
				var tools []*mcp.Tool
				for tool, err := range s.Tools(ctx, nil) {
					if err != nil {
						return err
					}
					tools = append(tools, tool)
				}
				w := cmd.OutOrStdout()
				if f.json {
					return printJSON(w, tools)
				}
				for _, t := range tools {
					desc, _, _ := strings.Cut(t.Description, "\n")
					fmt.Fprintf(w, "%-20s %s\n", t.Name, desc)
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newAgentCallCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	var argsJSON string
	cmd := &cobra.Command{
		Use:   "call --profile DIR RESOURCE TOOL [key=value | key:=json]...",
		Short: "Call a tool of an MCP resource and print its result",
		Long: "Call TOOL with arguments given as key=value (a string) or key:=json (any JSON\n" +
			"value: key:=3, key:=true, key:='{\"a\":1}'), or all at once with --args JSON\n" +
			"(--args - reads them from stdin). Prints the tool's text; --json prints the\n" +
			"whole result. Exit status: 0 success, 1 error or a tool that reported an\n" +
			"error, 3 denied by the edge (the reason on stderr), 4 edge unreachable.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			arguments, err := toolArguments(cmd.InOrStdin(), argsJSON, args[2:])
			if err != nil {
				return err
			}
			return f.run(cmd, g, args[0], func(ctx context.Context, s *mcp.ClientSession) error {
				res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: args[1], Arguments: arguments})
				if err != nil {
					return err
				}
				if f.json {
					if err := printJSON(cmd.OutOrStdout(), res); err != nil {
						return err
					}
				} else if !res.IsError {
					printContent(cmd.OutOrStdout(), res.Content, res.StructuredContent)
				}
				if res.IsError {
					var text strings.Builder
					printContent(&text, res.Content, nil)
					return &exitError{exitFailed, fmt.Errorf("tool %s reported an error: %s",
						args[1], strings.TrimSpace(text.String()))}
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&argsJSON, "args", "", "all arguments as one JSON object (- reads stdin)")
	return cmd
}

func newAgentReadCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "read --profile DIR RESOURCE URI",
		Short: "Read an MCP resource's resource by URI and print it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, g, args[0], func(ctx context.Context, s *mcp.ClientSession) error {
				res, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: args[1]})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if f.json {
					return printJSON(w, res)
				}
				for _, c := range res.Contents {
					if c.Blob != nil {
						fmt.Fprintf(w, "[%s: %d bytes of %s; --json prints them]\n",
							c.URI, len(c.Blob), c.MIMEType)
						continue
					}
					fmt.Fprint(w, c.Text)
					if !strings.HasSuffix(c.Text, "\n") {
						fmt.Fprintln(w)
					}
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newAgentPromptCmd(g *globalFlags) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "prompt --profile DIR RESOURCE NAME [key=value]...",
		Short: "Get a prompt of an MCP resource and print its messages",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			promptArgs := map[string]string{}
			for _, kv := range args[2:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("prompt argument %q: want key=value", kv)
				}
				promptArgs[k] = v
			}
			return f.run(cmd, g, args[0], func(ctx context.Context, s *mcp.ClientSession) error {
				res, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: args[1], Arguments: promptArgs})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if f.json {
					return printJSON(w, res)
				}
				for _, m := range res.Messages {
					fmt.Fprintf(w, "%s: ", m.Role)
					printContent(w, []mcp.Content{m.Content}, nil)
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

// toolArguments builds a tool's arguments from --args and key=value or
// key:=json pairs; pairs override --args.
func toolArguments(stdin io.Reader, argsJSON string, pairs []string) (map[string]any, error) {
	out := map[string]any{}
	if argsJSON == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("reading --args from stdin: %w", err)
		}
		argsJSON = string(data)
	}
	if strings.TrimSpace(argsJSON) != "" {
		if err := json.Unmarshal([]byte(argsJSON), &out); err != nil {
			return nil, fmt.Errorf("--args must be a JSON object: %w", err)
		}
	}
	for _, kv := range pairs {
		if k, raw, ok := strings.Cut(kv, ":="); ok && k != "" && !strings.Contains(k, "=") {
			var v any
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				return nil, fmt.Errorf("argument %s:=%s is not JSON: %w (use %s=... for a string)", k, raw, err, k)
			}
			out[k] = v
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q: want key=value or key:=json", kv)
		}
		out[k] = v
	}
	return out, nil
}

// printContent prints what a person wants to see of MCP content: text as
// it is, other kinds as a line that says what they are.
func printContent(w io.Writer, content []mcp.Content, structured any) {
	printed := false
	for _, c := range content {
		switch c := c.(type) {
		case *mcp.TextContent:
			fmt.Fprint(w, c.Text)
			if !strings.HasSuffix(c.Text, "\n") {
				fmt.Fprintln(w)
			}
		case *mcp.ImageContent:
			fmt.Fprintf(w, "[image, %s, %d bytes]\n", c.MIMEType, len(c.Data))
		case *mcp.AudioContent:
			fmt.Fprintf(w, "[audio, %s, %d bytes]\n", c.MIMEType, len(c.Data))
		case *mcp.ResourceLink:
			fmt.Fprintf(w, "[resource link %s]\n", c.URI)
		case *mcp.EmbeddedResource:
			if c.Resource != nil && c.Resource.Blob == nil {
				fmt.Fprintln(w, c.Resource.Text)
			} else if c.Resource != nil {
				fmt.Fprintf(w, "[resource %s, %d bytes]\n", c.Resource.URI, len(c.Resource.Blob))
			}
		default:
			fmt.Fprintf(w, "[%T]\n", c)
		}
		printed = true
	}
	if !printed && structured != nil {
		printJSON(w, structured)
	}
}
