package main

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/connector"
)

func newConnectorCmd(g *globalFlags) *cobra.Command {
	var file, token, data string
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
				if cmd.Flags().Changed("data") {
					c.DataDir = data
				}
			})
			if err != nil {
				return err
			}
			if err := enrollConnector(cmd, cfg, token, logger); err != nil {
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
	cmd.Flags().StringVar(&data, "data", "", "override data_dir (where the enrolled credential is kept)")
	cmd.Flags().StringVar(&token, "token", "", "join token for the first start: enroll into data_dir (ignored once enrolled)")
	return cmd
}

// enrollConnector enrolls on first start, when data_dir holds no
// credential yet and a join token was given.
func enrollConnector(cmd *cobra.Command, cfg connector.Config, token string, logger *slog.Logger) error {
	if cfg.DataDir == "" {
		if token != "" {
			return errors.New("--token needs data_dir (or --data): the folder that keeps the enrolled credential")
		}
		return nil
	}
	if connector.Enrolled(cfg) {
		if token != "" {
			logger.Warn("already enrolled, ignoring --token", "data_dir", cfg.DataDir)
		}
		return nil
	}
	if token == "" {
		return errors.New("data_dir " + cfg.DataDir + " holds no credential yet: start once with --token (from `airlock admin token create --kind connector`)")
	}
	return connector.Enroll(cmd.Context(), cfg, token, logger)
}
