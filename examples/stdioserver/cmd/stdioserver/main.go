// Command stdioserver runs the example stdio MCP server (package
// stdioserver) on stdin and stdout; it logs to stderr and exits when
// stdin closes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/examples/stdioserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "%s %s serving on stdio, pid %d\n", stdioserver.Name, stdioserver.Version, os.Getpid())
	err := stdioserver.New().Run(ctx, &mcp.StdioTransport{})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "stdioserver: %v\n", err)
		os.Exit(1)
	}
}
