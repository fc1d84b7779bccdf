package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	examplepolicy "github.com/airlockhq/airlock/examples/policy"
	"github.com/airlockhq/airlock/pkg/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check request policies offline: run their tests, explain a decision",
	}
	cmd.AddCommand(newPolicyTestCmd(), newPolicyEvalCmd())
	return cmd
}

func newPolicyTestCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test DIR",
		Short: "Run the Rego unit tests (test_* rules, in *_test.rego files) of a policy folder",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			passed, failed, err := policy.Test(cmd.Context(), args[0], cmd.OutOrStdout(), verbose)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return fmt.Errorf("%d policy tests failed", failed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test")
	return cmd
}

func newPolicyEvalCmd() *cobra.Command {
	var dir, inputFile string
	cmd := &cobra.Command{
		Use:   "eval --dir DIR --input FILE|-",
		Short: "Decide one input document (docs/policy.md) and show the rules that fired",
		Long: "Evaluate the policy folder for one input document, as the edge would for a\n" +
			"request, and print the decision, the agent's message and the rules whose\n" +
			"bodies held. The exit status is 0 for allow, 3 for deny, 1 for an error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			input, err := readInput(cmd, inputFile)
			if err != nil {
				return err
			}
			e, err := policy.New(cmd.Context(), dir, nil)
			if err != nil {
				return err
			}
			x, err := e.Explain(cmd.Context(), input)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if x.Allowed {
				fmt.Fprintf(w, "allow (policy %s)\n", x.Decision.Revision)
			} else {
				fmt.Fprintf(w, "deny (policy %s): %s\n", x.Decision.Revision, x.Decision.Message())
			}
			for _, r := range x.Rules {
				fmt.Fprintf(w, "  fired: %s\n", r)
			}
			if !x.Allowed {
				return errDenied
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the policy folder (required)")
	cmd.Flags().StringVar(
		&inputFile,
		"input",
		"",
		"the input document, JSON (- for stdin) (required)",
	)
	cmd.MarkFlagRequired("dir")
	cmd.MarkFlagRequired("input")
	return cmd
}

// errDenied makes `airlock policy eval` exit with status 3.
var errDenied = errors.New("denied")

func readInput(cmd *cobra.Command, file string) (map[string]any, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading input document: %w", err)
	}
	var input map[string]any
	if err := json.Unmarshal(data, &input); err != nil {
		return nil, fmt.Errorf("reading input document %s: %w", file, err)
	}
	return input, nil
}

// writeExamplePolicy writes the example policy into dir unless it holds
// one already. withGrants false writes it with no tool grants and without
// its tests, which assume the example's grants.
func writeExamplePolicy(dir string, withGrants bool) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating policy folder: %w", err)
	}
	files := []string{"authz.rego"}
	if withGrants {
		files = append(files, "authz_test.rego", "data.json")
	}
	for _, name := range files {
		data, err := examplepolicy.Files.ReadFile(name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing policy: %w", err)
		}
	}
	if !withGrants {
		empty := []byte("{\n  \"grants\": {\n    \"tools\": {}\n  }\n}\n")
		return os.WriteFile(filepath.Join(dir, "data.json"), empty, 0o644)
	}
	return nil
}
