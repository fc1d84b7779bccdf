package main

import "github.com/spf13/cobra"

func newBenchCmd(_ *globalFlags) *cobra.Command {
	return &cobra.Command{Use: "bench", Hidden: true}
}
