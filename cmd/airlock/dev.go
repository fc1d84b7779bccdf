package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/edge"
)

func newDevCmd(g *globalFlags) *cobra.Command {
	opts := stackOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start a whole local Airlock: CA, edge, connector and a demo MCP server",
		Long: "Start a complete local deployment in one process: a CA in --dir (created on first\n" +
			"use, reused after), an edge on --addr, a connector with its tunnels, and a demo\n" +
			"internal MCP server that only the connector can reach. Writes DIR/dev.json and\n" +
			"prints commands to call it. Ctrl-C shuts everything down cleanly.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-format") {
				g.logFormat = "text"
			}
			logger, err := g.logger()
			if err != nil {
				return err
			}
			opts.logger = logger
			s, err := startStack(cmd.Context(), opts)
			if err != nil {
				return err
			}
			dir, _ := filepath.Abs(opts.dir)
			file, err := writeDevInfo(dir, s.info)
			if err != nil {
				s.stop()
				return err
			}
			printWelcome(cmd.OutOrStdout(), s.info, file)
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "\nshutting down")
			s.stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "./airlock-dev", "data folder of the local deployment (created if missing)")
	f.StringVar(&opts.addr, "addr", edge.DefaultListen, "edge address for agents (TCP) and connectors (UDP)")
	f.StringVar(&opts.opsAddr, "ops-addr", "127.0.0.1:0", "metrics and health address")
	f.BoolVar(&opts.stateless, "stateless", false, "run the demo MCP server stateless (MCP 2026-07-28 style, no sessions)")
	f.StringVar(&opts.upstream, "upstream", "",
		"serve this Streamable HTTP MCP endpoint (http://127.0.0.1:PORT/mcp) as the demo resource "+
			"instead of the built-in demo server; the policy in DIR/policy decides its calls")
	return cmd
}

func printWelcome(w io.Writer, info devInfo, file string) {
	url := info.Resources[devResource]
	bin := "airlock"
	if exe, err := os.Executable(); err == nil {
		bin = exe
	}
	agentCmd := fmt.Sprintf("%s agent %%s --profile %s", bin, info.AgentProfile)
	curl := fmt.Sprintf(`curl -sS --cacert %s --cert %s -H "Authorization: Bearer $TOKEN"`, info.CACert, info.AgentCert)
	command, _ := json.Marshal(bin)
	args, _ := json.Marshal([]string{"agent", "bridge", "--profile", info.AgentProfile,
		"--log-level", "warn", devResource})
	bridge := fmt.Sprintf("{\"mcpServers\": {%q: {\"command\": %s,\n    \"args\": %s}}}",
		devResource, command, bytes.ReplaceAll(args, []byte(`","`), []byte(`", "`)))
	stdioURL := info.Resources[devStdioResource]
	fmt.Fprintf(w, `
Airlock is running locally.

  edge (agents)      %s
  MCP endpoint       %s
  token endpoint     %s
  agent profile      %s
  policy             %s
  metrics            %s
  details            %s

Two MCP resources sit behind the connector: "demo", an HTTP server on a
loopback port that only the connector uses, and "notes" (%s), a stdio
server that the connector starts once per MCP session. Agents reach them
through the edge and the QUIC tunnel with an agent certificate and a
short-lived access token bound to it. Every call is decided by the policy
in %s (edit it; it reloads at once).

Try it as the agent, in another terminal. The tool lists are filtered by
the policy (demo's blob is kept for tokens narrowed to it, notes' crash
is granted to nobody):

  %s
  %s read_file path=public/welcome.txt        # allowed
  %s read_file path=private/plan.txt          # denied for its argument (exit 3)
  %s
  %s pid                                       # a process for this session
  %s crash                                     # denied: not granted (exit 3)

Connect an MCP client (Claude Desktop, Cursor, ...) through the stdio bridge
(the same with "notes" for the other resource):

  %s

Or speak MCP yourself with curl. First an access token (5 minutes):

  TOKEN=$(%s agent token --profile %s --resource %s)

Then:

  %s -X POST %s \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' -D -

and, with the Mcp-Session-Id header from that answer:

  %s -X POST %s -H 'Mcp-Session-Id: <id>' -H 'MCP-Protocol-Version: 2025-11-25' \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

Without the certificate, or without the token, the edge refuses:

  curl -sS --cacert %s -X POST %s -d '{}'

Press Ctrl-C to stop.
`, info.EdgeURL, url, info.TokenURL, info.AgentProfile, info.PolicyDir, info.MetricsURL, file,
		stdioURL, info.PolicyDir,
		fmt.Sprintf(agentCmd, "tools")+" "+devResource,
		fmt.Sprintf(agentCmd, "call")+" "+devResource,
		fmt.Sprintf(agentCmd, "call")+" "+devResource,
		fmt.Sprintf(agentCmd, "tools")+" "+devStdioResource,
		fmt.Sprintf(agentCmd, "call")+" "+devStdioResource,
		fmt.Sprintf(agentCmd, "call")+" "+devStdioResource,
		bridge,
		bin, info.AgentProfile, devResource, curl, url, curl, url, info.CACert, url)
}
