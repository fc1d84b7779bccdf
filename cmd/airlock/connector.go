package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/connector"
)

func newConnectorCmd(g *globalFlags) *cobra.Command {
	var file string
	var edges []string
	cmd := &cobra.Command{
		Use:   "connector --config FILE",
		Short: "Run a connector: dial out to the edges and relay their requests to private MCP servers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			if file == "" {
				return errors.New("--config is required (see examples/connector.yaml)")
			}
			cfg, err := connector.LoadConfig(file, func(c *connector.Config) {
				if cmd.Flags().Changed("edge") {
					c.Edges = edges
				}
			})
			if err != nil {
				return err
			}
			c, err := connector.New(cfg, connector.Options{Logger: logger})
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "connector configuration file (YAML)")
	cmd.Flags().StringSliceVar(&edges, "edge", nil, "override edges (host:port of an edge tunnel; repeat or comma-separate)")
	return cmd
}
