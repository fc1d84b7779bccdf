package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/edge"
)

func newAdminCmd(_ *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer an edge",
	}
	cmd.AddCommand(newAdminIssueCmd())
	return cmd
}

func newAdminIssueCmd() *cobra.Command {
	var data, kind, name, out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue --data DIR --kind agent|connector --name NAME --out DIR",
		Short: "Issue a certificate from the CA in an edge's data folder",
		Long: "Issue a certificate and key from the CA in an edge's data folder, for hosts that\n" +
			"can read that folder. The key is made here and written with mode 0600.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := certs.ParseKind(kind)
			if err != nil {
				return err
			}
			ca, err := certs.Load(edge.CADir(data))
			if err != nil {
				return err
			}
			cred, err := ca.Issue(cmd.Context(), certs.SignRequest{Kind: k, Name: name, Lifetime: ttl})
			if err != nil {
				return err
			}
			certFile := filepath.Join(out, name+".crt")
			keyFile := filepath.Join(out, name+".key")
			if err := cred.WriteFiles(certFile, keyFile); err != nil {
				return err
			}
			caFile := filepath.Join(out, "ca.crt")
			if err := certs.WriteCertificates(caFile, ca.Root()); err != nil {
				return err
			}
			id, _ := certs.IdentityOf(cred.Leaf())
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "issued %s until %s\n", id, cred.Leaf().NotAfter.Format(time.RFC3339))
			fmt.Fprintf(w, "  certificate: %s\n  key:         %s\n  trust:       %s\n", certFile, keyFile, caFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the edge's data folder (required)")
	f.StringVar(&kind, "kind", "", "agent or connector (required)")
	f.StringVar(&name, "name", "", "identity name (required)")
	f.StringVar(&out, "out", ".", "folder to write NAME.crt, NAME.key and ca.crt to")
	f.DurationVar(&ttl, "ttl", time.Hour, "certificate lifetime")
	for _, n := range []string{"data", "kind", "name"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
