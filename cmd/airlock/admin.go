package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/edge"
	"github.com/airlockhq/airlock/pkg/audit"
	"github.com/airlockhq/airlock/pkg/store"
)

func newAdminCmd(_ *globalFlags) *cobra.Command {
	t := &adminTarget{}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer an edge: join tokens, identities, revocation, CA and signing-key rotation",
		Long: "Administer a running edge through its admin API: with --data DIR on the edge's own\n" +
			"host (the local socket DIR/admin.sock, mode 0600), or with --edge URL and an admin\n" +
			"certificate (created by `airlock edge init`) from anywhere.",
	}
	t.flags(cmd)
	cmd.AddCommand(newAdminIssueCmd(), newAdminTokenCmd(t), newAdminTokensCmd(t),
		newAdminListCmd(t, "connectors"), newAdminListCmd(t, "agents"),
		newAdminRevokeCmd(t), newAdminRevocationsCmd(t), newAdminCACmd(t), newAdminKeysCmd(t),
		newAdminAuditCmd(t))
	return cmd
}

func newAdminTokenCmd(t *adminTarget) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage one-time join tokens"}
	var req edge.TokenRequest
	create := &cobra.Command{
		Use:   "create --kind agent|connector --name NAME [--ttl 15m]",
		Short: "Create a one-time join token bound to a kind and a name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			var info edge.TokenInfo
			if err := c.call(cmd.Context(), "POST", "tokens", req, &info); err != nil {
				return err
			}
			if t.json {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintln(cmd.OutOrStdout(), info.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "join token %s for %s %q, valid until %s, works once\n",
				info.ID, info.Kind, info.Name, info.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&req.Kind, "kind", "", "agent or connector (required)")
	f.StringVar(&req.Name, "name", "", "the name the new identity gets (required)")
	f.DurationVar(&req.TTL, "ttl", edge.DefaultJoinTokenTTL, "how long the token may be used (at most the edge's max_join_token_ttl, default 24h)")
	create.MarkFlagRequired("kind")
	create.MarkFlagRequired("name")
	cmd.AddCommand(create)
	return cmd
}

func newAdminTokensCmd(t *adminTarget) *cobra.Command {
	return &cobra.Command{
		Use:   "tokens",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []edge.TokenInfo
			if err := adminGet(cmd, t, "tokens", &list); err != nil || t.json {
				return jsonOr(cmd, t, list, err)
			}
			tw := table(cmd.OutOrStdout(), "ID", "KIND", "NAME", "STATE", "EXPIRES", "USED FOR SERIAL")
			for _, tok := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tok.ID, tok.Kind, tok.Name, tok.State,
					tok.ExpiresAt.Format(time.RFC3339), dash(tok.UsedSerial))
			}
			return tw.Flush()
		},
	}
}

func newAdminListCmd(t *adminTarget, what string) *cobra.Command {
	return &cobra.Command{
		Use:   what,
		Short: "List " + what + ": certificates, last seen, revocation" + map[string]string{"connectors": ", live tunnels"}[what],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []edge.IdentityInfo
			if err := adminGet(cmd, t, what, &list); err != nil || t.json {
				return jsonOr(cmd, t, list, err)
			}
			if what == "agents" {
				tw := table(cmd.OutOrStdout(), "NAME", "SERIAL", "CERT EXPIRES", "LAST SEEN", "REVOKED")
				for _, a := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", a.Name, a.Serial, stamp(a.CertNotAfter), stamp(a.LastSeen), a.Revoked)
				}
				return tw.Flush()
			}
			tw := table(cmd.OutOrStdout(), "NAME", "RESOURCES", "CONNECTIONS", "REMOTE", "VERSION", "CERT EXPIRES", "LAST SEEN", "REVOKED")
			for _, c := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%v\n", c.Name, dash(strings.Join(c.Resources, ",")),
					c.Connections, dash(strings.Join(c.RemoteAddrs, ",")), dash(c.Version),
					stamp(c.CertNotAfter), stamp(c.LastSeen), c.Revoked)
			}
			return tw.Flush()
		},
	}
}

func newAdminRevokeCmd(t *adminTarget) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke IDENTITY|SERIAL [--reason TEXT]",
		Short: "Revoke an identity (spiffe://... or kind/name) or one certificate serial, at once",
		Long: "Revoke an identity (every certificate it holds now) or one certificate (by decimal\n" +
			"serial). The edge refuses it from then on at the handshake, on every request and at\n" +
			"renewal, and closes its live tunnels and streams at once. Revocations survive\n" +
			"restarts. A revoked identity's name can be enrolled again with a new join token.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			var res edge.RevokeResult
			if err := c.call(cmd.Context(), "POST", "revoke", edge.RevokeRequest{Target: args[0], Reason: reason}, &res); err != nil {
				return err
			}
			if t.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			what := res.Revocation.Identity
			if what == "" {
				what = "certificate " + res.Revocation.Serial
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s; closed %d tunnels and %d requests\n", what, res.ClosedTunnels, res.ClosedRequests)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded and shown to the revoked holder")
	return cmd
}

func newAdminRevocationsCmd(t *adminTarget) *cobra.Command {
	return &cobra.Command{
		Use:   "revocations",
		Short: "List revocations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []store.Revocation
			if err := adminGet(cmd, t, "revocations", &list); err != nil || t.json {
				return jsonOr(cmd, t, list, err)
			}
			tw := table(cmd.OutOrStdout(), "IDENTITY", "SERIAL", "REVOKED AT", "REASON")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(r.Identity), dash(r.Serial), stamp(r.RevokedAt), dash(r.Reason))
			}
			return tw.Flush()
		},
	}
}

func newAdminCACmd(t *adminTarget) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca [prepare|activate|retire]",
		Short: "Show the trusted roots, or take one step of a CA rotation",
		Long: "Without an argument, list the trusted roots. A rotation has three steps; run each\n" +
			"when the one before has reached every holder (see docs/identity.md):\n" +
			"  prepare   make a next root; holders learn to trust it on their next renewal\n" +
			"  activate  sign with the next root; the old one stays trusted as previous\n" +
			"  retire    stop trusting the previous root",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"prepare", "activate", "retire"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var roots []certs.RootInfo
			var err error
			if len(args) == 0 {
				err = adminGet(cmd, t, "ca", &roots)
			} else {
				var c *adminClient
				if c, err = t.client(); err == nil {
					err = c.call(cmd.Context(), "POST", "ca/"+args[0], struct{}{}, &roots)
				}
			}
			if err != nil || t.json {
				return jsonOr(cmd, t, roots, err)
			}
			tw := table(cmd.OutOrStdout(), "ROLE", "SUBJECT", "EXPIRES", "PIN")
			for _, r := range roots {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Role, r.Subject, stamp(r.NotAfter), r.Pin)
			}
			return tw.Flush()
		},
	}
	return cmd
}

func newAdminKeysCmd(t *adminTarget) *cobra.Command {
	print := func(cmd *cobra.Command, keys []edge.KeyInfo, err error) error {
		if err != nil || t.json {
			return jsonOr(cmd, t, keys, err)
		}
		tw := table(cmd.OutOrStdout(), "KID", "ALG", "SIGNING", "CREATED", "RETIRED", "REMOVED AFTER")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", k.ID, k.Alg, k.Signing, stamp(k.CreatedAt),
				stamp(k.RetiredAt), stamp(k.RemoveAfter))
		}
		return tw.Flush()
	}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List the access-token signing keys (published at /.well-known/jwks.json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys []edge.KeyInfo
			err := adminGet(cmd, t, "keys", &keys)
			return print(cmd, keys, err)
		},
	}
	var req edge.RotateKeysRequest
	rotate := &cobra.Command{
		Use:   "rotate [--alg ES256|EdDSA]",
		Short: "Sign with a new key; the old one stays published until its tokens have expired",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			var keys []edge.KeyInfo
			err = c.call(cmd.Context(), "POST", "keys/rotate", req, &keys)
			return print(cmd, keys, err)
		},
	}
	rotate.Flags().StringVar(&req.Alg, "alg", "", "algorithm of the new key (default: the edge's token_signing_alg)")
	cmd.AddCommand(rotate)
	return cmd
}

func newAdminAuditCmd(t *adminTarget) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the edge's decision records (audit file)"}
	var n int
	var follow bool
	tail := &cobra.Command{
		Use:   "tail [-n N] [--follow]",
		Short: "Print the last decision records, and with --follow the new ones as they come",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			from := -int64(n)
			for {
				var page edge.AuditPage
				if err := c.call(cmd.Context(), "GET", fmt.Sprintf("audit?from=%d", from), nil, &page); err != nil {
					return err
				}
				printAudit(cmd.OutOrStdout(), page.Records, t.json)
				if !follow {
					return nil
				}
				from = page.Next
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	tail.Flags().IntVarP(&n, "lines", "n", 20, "how many of the last records to print first")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records until interrupted")
	cmd.AddCommand(tail)
	return cmd
}

// printAudit prints records one a line: JSON with --json, else readable.
func printAudit(w io.Writer, recs []audit.Record, asJSON bool) {
	for _, r := range recs {
		if asJSON {
			line, _ := json.Marshal(r)
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		what := r.Method
		if r.Target != "" {
			what += " " + r.Target
		}
		if what == "" {
			what = r.Kind
		}
		fmt.Fprintf(w, "%s  %-5s  %s  %s  %s", r.Time.Local().Format(time.RFC3339), r.Decision, r.Agent, r.Resource, what)
		if r.Reason != "" {
			fmt.Fprintf(w, "  (%s)", r.Reason)
		}
		fmt.Fprintf(w, "  %s\n", r.RequestID)
	}
}

func adminGet(cmd *cobra.Command, t *adminTarget, path string, out any) error {
	c, err := t.client()
	if err != nil {
		return err
	}
	return c.call(cmd.Context(), "GET", path, nil, out)
}

// jsonOr ends a listing command: with an error, that error; with --json,
// the value as JSON.
func jsonOr(cmd *cobra.Command, t *adminTarget, v any, err error) error {
	if err != nil {
		return err
	}
	if t.json {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return nil
}

func table(w io.Writer, headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	return tw
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func newAdminIssueCmd() *cobra.Command {
	var data, kind, name, out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue --data DIR --kind agent|connector|admin --name NAME --out DIR",
		Short: "Issue a certificate from the CA in an edge's data folder (prefer join tokens)",
		Long: "Issue a certificate and key from the CA in an edge's data folder, for hosts that\n" +
			"can read that folder. The key is made here and written with mode 0600. Holders of\n" +
			"such certificates do not renew them; prefer `airlock admin token create` and\n" +
			"enrollment, which make the key on the holder's host. --kind admin makes a new\n" +
			"admin credential for remote administration (`airlock admin --edge`).",
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
			if err := certs.WriteCertificates(caFile, ca.Bundle()...); err != nil {
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
	f.StringVar(&kind, "kind", "", "agent, connector or admin (required)")
	f.StringVar(&name, "name", "", "identity name (required)")
	f.StringVar(&out, "out", ".", "folder to write NAME.crt, NAME.key and ca.crt to")
	f.DurationVar(&ttl, "ttl", time.Hour, "certificate lifetime")
	for _, n := range []string{"data", "kind", "name"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
