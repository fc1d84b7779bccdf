//go:build unix

package connector

import (
	"os/exec"
	"syscall"
	"time"
)

// ownGroup starts the command in a process group of its own, so that
// stopping it also stops what it started (npx starts node, a shell
// script starts its program).
func ownGroup(cmd *exec.Cmd) {
	attr := &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(attr)
	cmd.SysProcAttr = attr
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

// endGroup stops what is left of the process group of a reaped process:
// SIGTERM, then SIGKILL if anything is still there after stopGrace.
// The group's ID cannot be reused while the group has members.
func endGroup(cmd *exec.Cmd) {
	pgid := cmd.Process.Pid
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // the group is empty
	}
	const polls = 20
	for range polls {
		time.Sleep(stopGrace / polls)
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}
