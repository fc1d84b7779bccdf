package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/pkg/token"
)

func newAgentCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Agent side: enroll, keep the credential fresh, reach MCP resources",
		Long: "Commands for the host an agent runs on. An agent profile is a folder (--profile)\n" +
			"holding the agent's key and certificate (identity.pem, mode 0600), the trust\n" +
			"bundle (ca.pem) and the edge's URL; `airlock agent enroll` creates it.",
	}
	cmd.AddCommand(newAgentEnrollCmd(g), newAgentRenewCmd(g), newAgentStatusCmd(), newAgentTokenCmd(),
		newAgentBridgeCmd(g), newAgentProxyCmd(g), newAgentToolsCmd(g), newAgentCallCmd(g),
		newAgentReadCmd(g), newAgentPromptCmd(g))
	return cmd
}

func newAgentEnrollCmd(g *globalFlags) *cobra.Command {
	var opts enroll.Options
	cmd := &cobra.Command{
		Use:   "enroll --edge URL --token TOKEN --dir DIR",
		Short: "Make a key on this host and redeem a join token for the agent's certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := g.logger()
			if err != nil {
				return err
			}
			opts.Kind, opts.Logger = certs.KindAgent, logger
			h, err := enroll.Enroll(cmd.Context(), opts)
			if err != nil {
				return err
			}
			leaf := h.Credential().Leaf()
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s until %s\n  profile: %s\n",
				h.Identity(), leaf.NotAfter.Format(time.RFC3339), h.Dir())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.EdgeURL, "edge", "", "the edge's URL, https://host:port (required)")
	f.StringVar(&opts.Token, "token", "", "the join token from `airlock admin token create` (required)")
	f.StringVar(&opts.Dir, "dir", "", "the agent profile folder to create (required)")
	f.StringVar(&opts.Name, "name", "", "refuse a token for another agent name")
	f.StringVar(&opts.CAFile, "ca-file", "", "trust this PEM bundle instead of checking the token's pin")
	for _, n := range []string{"edge", "token", "dir"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newAgentRenewCmd(g *globalFlags) *cobra.Command {
	var profile string
	var force bool
	cmd := &cobra.Command{
		Use:   "renew --profile DIR [--force]",
		Short: "Renew the agent's certificate over mutual TLS if it is due (for cron and scripts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.logger(); err != nil {
				return err
			}
			h, err := enroll.Load(profile)
			if err != nil {
				return err
			}
			leaf := h.Credential().Leaf()
			if time.Now().After(leaf.NotAfter) {
				return enroll.ErrExpired
			}
			if due := enroll.RenewAt(leaf, 0); !force && time.Now().Before(due) {
				fmt.Fprintf(cmd.OutOrStdout(), "not due: %s renews after %s (--force to renew now)\n",
					h.Identity(), due.Format(time.RFC3339))
				return nil
			}
			if err := h.Renew(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renewed %s until %s\n", h.Identity(),
				h.Credential().Leaf().NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "the agent profile folder (required)")
	cmd.Flags().BoolVar(&force, "force", false, "renew even when not yet due")
	cmd.MarkFlagRequired("profile")
	return cmd
}

func newAgentStatusCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "status --profile DIR",
		Short: "Show the agent profile: identity, edge, certificate lifetime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := enroll.Load(profile)
			if err != nil {
				return err
			}
			leaf := h.Credential().Leaf()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "identity     %s\nedge         %s\nserial       %s\nnot after    %s\nrenews after %s\ntrusted roots %d\n",
				h.Identity(), h.EdgeURL(), leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339),
				enroll.RenewAt(leaf, 0).Format(time.RFC3339), len(h.Bundle()))
			if time.Now().After(leaf.NotAfter) {
				return errors.New("the certificate has expired: enroll again with a new join token")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "the agent profile folder (required)")
	cmd.MarkFlagRequired("profile")
	return cmd
}

func newAgentTokenCmd() *cobra.Command {
	var profile, resource, scope, exchange string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --profile DIR --resource URL|NAME [--scope S] [--ttl D] [--exchange FILE|-]",
		Short: "Print an access token for an MCP resource, bound to the agent's certificate (for scripts)",
		Long: "Ask the edge's token endpoint for an access token, authenticating with the\n" +
			"agent's certificate. The token works only together with that certificate\n" +
			"(RFC 8705), for the resource named (its MCP endpoint URL, or just its name),\n" +
			"within the scope asked for (default: the whole resource). With --exchange,\n" +
			"narrow an existing token instead (RFC 8693): never wider, never longer; the\n" +
			"token is read from the file, or from stdin for -, never from the command line.\n" +
			"Scope grammar: mcp:RESOURCE[:METHOD[:NAME]], space-separated; see docs/tokens.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := loadAgent(cmd, profile)
			if err != nil {
				return err
			}
			if !strings.Contains(resource, "://") {
				resource = h.EdgeURL() + "/mcp/" + resource
			}
			subject, err := readSubjectToken(cmd, exchange)
			if err != nil {
				return err
			}
			resp, err := token.Fetch(cmd.Context(), h.HTTPClient(), h.EdgeURL()+token.PathToken, token.Request{
				Resources:    []string{resource},
				Scope:        scope,
				SubjectToken: subject,
				Lifetime:     ttl,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.AccessToken)
			fmt.Fprintf(cmd.ErrOrStderr(), "token for %s, scope %q, expires in %ds\n", resource, resp.Scope, resp.ExpiresIn)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "", "the agent profile folder (required)")
	f.StringVar(&resource, "resource", "", "the MCP endpoint URL, or the resource name (required)")
	f.StringVar(&scope, "scope", "", "narrow the token, e.g. mcp:demo:tools/call:read_note")
	f.DurationVar(&ttl, "ttl", 0, "a shorter lifetime than the edge's default")
	f.StringVar(&exchange, "exchange", "", "narrow the access token in this file (- for stdin) instead of asking for a new one")
	cmd.MarkFlagRequired("profile")
	cmd.MarkFlagRequired("resource")
	return cmd
}

// loadAgent opens an agent profile for a command that talks to the edge,
// renewing the certificate first when it is due.
func loadAgent(cmd *cobra.Command, profile string) (*enroll.Holder, error) {
	h, renewed, err := enroll.LoadCurrent(cmd.Context(), profile)
	if err != nil {
		return nil, err
	}
	if renewed {
		fmt.Fprintf(cmd.ErrOrStderr(), "renewed %s until %s\n", h.Identity(),
			h.Credential().Leaf().NotAfter.Format(time.RFC3339))
	}
	return h, nil
}

// readSubjectToken reads the token to narrow from a file or stdin: a
// token on the command line would show in ps and shell history.
func readSubjectToken(cmd *cobra.Command, from string) (string, error) {
	if from == "" {
		return "", nil
	}
	var data []byte
	var err error
	if from == "-" {
		data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), token.MaxTokenBytes+1))
	} else {
		data, err = os.ReadFile(from)
	}
	if err != nil {
		return "", fmt.Errorf("reading the token to narrow: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}
