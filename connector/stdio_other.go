//go:build !unix

package connector

import "os/exec"

// ownGroup does nothing where process groups are not available.
func ownGroup(*exec.Cmd) {}

// terminate stops the process; without signals it cannot ask first.
func terminate(cmd *exec.Cmd) { cmd.Process.Kill() }

// kill stops the process at once.
func kill(cmd *exec.Cmd) { cmd.Process.Kill() }

// endGroup does nothing: without process groups the connector cannot
// find what a process started.
func endGroup(*exec.Cmd) {}
