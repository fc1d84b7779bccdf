package main

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/examples/stdioserver"
)

// newStdioDemoCmd runs the example stdio MCP server, which `airlock dev`
// serves as its stdio resource: the connector starts this command once
// per MCP session. Hidden: it is not a tool for people.
func newStdioDemoCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "stdio-demo",
		Short:  "Serve the example stdio MCP server on stdin and stdout",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return stdioserver.New().Run(cmd.Context(), &mcp.StdioTransport{})
		},
	}
}
