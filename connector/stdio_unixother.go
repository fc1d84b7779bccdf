//go:build unix && !linux

package connector

import "syscall"

// dieWithParent does nothing: only Linux is asked to signal a process
// when the connector dies.
func dieWithParent(*syscall.SysProcAttr) {}
