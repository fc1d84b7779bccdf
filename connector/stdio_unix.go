//go:build unix

package connector

import (
	"os/exec"
	"syscall"
)

// ownGroup starts the command in a process group of its own, so that
// stopping it also stops what it started (npx starts node, a shell
// script starts its program).
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks the process group to stop (SIGTERM).
func terminate(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
}

// kill stops the process group at once (SIGKILL).
func kill(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Process.Kill()
}
