package connector

import "syscall"

// dieWithParent has the kernel SIGKILL the process when the connector
// dies, even by SIGKILL or a crash that skips every cleanup. Only the
// process itself gets the signal, not what it started.
//
// NOTE: Linux sends it when the thread that started the process exits;
// Go ends a thread only when a goroutine locked to it exits, which the
// connector does not do.
func dieWithParent(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
