//go:build !linux

package chaos

import "syscall"

// procAttr: without Pdeathsig only Close and KillAll clean up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
