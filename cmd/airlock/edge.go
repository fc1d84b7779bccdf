package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/edge"
)

// adminLifetime is the lifetime of the admin credential `edge init` writes.
const adminLifetime = 24 * time.Hour

func newEdgeCmd(g *globalFlags) *cobra.Command {
	var file string
	var over edge.Config
	cmd := &cobra.Command{
		Use:   "edge --config FILE",
		Short: "Run the edge: the agents' front door and the connectors' tunnel endpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			if file == "" {
				return errors.New("--config is required (see examples/edge.yaml)")
			}
			cfg, err := edge.LoadConfig(file, func(c *edge.Config) { applyEdgeFlags(cmd, c, over) })
			if err != nil {
				return err
			}
			e, err := edge.New(cfg, logger)
			if err != nil {
				return err
			}
			return e.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "config", "", "edge configuration file (YAML)")
	f.StringVar(&over.DataDir, "data", "", "override data_dir")
	f.StringVar(&over.Listen, "listen", "", "override listen (HTTPS front door)")
	f.StringVar(&over.TunnelListen, "tunnel-listen", "", "override tunnel_listen (QUIC)")
	f.StringVar(&over.OpsListen, "ops-listen", "", `override ops_listen (metrics and health; "off" disables)`)
	cmd.AddCommand(newEdgeInitCmd())
	return cmd
}

// applyEdgeFlags copies the flags the user set into cfg.
func applyEdgeFlags(cmd *cobra.Command, cfg *edge.Config, over edge.Config) {
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("data", &cfg.DataDir, over.DataDir)
	set("listen", &cfg.Listen, over.Listen)
	set("tunnel-listen", &cfg.TunnelListen, over.TunnelListen)
	set("ops-listen", &cfg.OpsListen, over.OpsListen)
}

func newEdgeInitCmd() *cobra.Command {
	var dir, domain string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create an edge's data folder: the CA (root and intermediate), an admin credential and a starting policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := initEdgeData(cmd.Context(), dir, domain)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created certificate authority for trust domain %s\n", domain)
			fmt.Fprintf(out, "  root certificate (give it to agents and connectors): %s\n", paths.root)
			fmt.Fprintf(out, "  admin certificate: %s\n  admin key:         %s\n", paths.adminCert, paths.adminKey)
			fmt.Fprintf(out, "  request policy:    %s (grants no tools yet: edit data.json; see docs/policy.md)\n", paths.policy)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "data folder to create (required)")
	cmd.Flags().StringVar(&domain, "domain", certs.DefaultTrustDomain, "SPIFFE trust domain")
	cmd.MarkFlagRequired("dir")
	return cmd
}

type edgeDataPaths struct {
	root, adminCert, adminKey, policy string
}

func initEdgeData(ctx context.Context, dir, domain string) (edgeDataPaths, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return edgeDataPaths{}, err
	}
	ca, err := certs.Init(edge.CADir(abs), domain)
	if err != nil {
		return edgeDataPaths{}, err
	}
	p := edgeDataPaths{
		root:      certs.RootFile(edge.CADir(abs)),
		adminCert: filepath.Join(abs, "admin", "admin.crt"),
		adminKey:  filepath.Join(abs, "admin", "admin.key"),
	}
	cred, err := ca.Issue(ctx, certs.SignRequest{Kind: certs.KindAdmin, Name: "admin", Lifetime: adminLifetime})
	if err != nil {
		return edgeDataPaths{}, err
	}
	if err := cred.WriteFiles(p.adminCert, p.adminKey); err != nil {
		return edgeDataPaths{}, err
	}
	// A starting policy that allows sessions and listing but no tool
	// until data.json grants it: a new edge denies what nobody allowed.
	p.policy = filepath.Join(abs, "policy")
	if err := writeExamplePolicy(p.policy, false); err != nil {
		return edgeDataPaths{}, err
	}
	return p, nil
}
