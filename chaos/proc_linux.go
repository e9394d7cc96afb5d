//go:build linux

package chaos

import "syscall"

// procAttr puts every node in its own process group (so a signal reaches
// anything it forks) and asks the kernel to SIGKILL it when the thread that
// started it dies: a test binary that panics or is killed must not leave
// redraft processes behind holding ports and data dirs.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
