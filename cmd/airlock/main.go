// Command airlock is the single Airlock binary: the edge, the connector,
// the agent tools, administration and the local quickstart.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type globalFlags struct {
	logLevel  string
	logFormat string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		// `policy eval` prints its own denial.
		if !errors.Is(err, errDenied) {
			fmt.Fprintln(os.Stderr, "airlock:", err)
		}
		stop()
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "airlock",
		Short:         "Zero-trust tunnel for AI agents: request-time authorization for every MCP call",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "json", "log format: json or text")
	root.AddCommand(newEdgeCmd(g), newConnectorCmd(g), newAgentCmd(g), newAdminCmd(g), newDevCmd(g), newBenchCmd(g),
		newPolicyCmd(), newStdioDemoCmd())
	return root
}

// logger builds the process's logger on stderr; only main builds handlers.
func (g *globalFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch g.logFormat {
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", g.logFormat)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}
