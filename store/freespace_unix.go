//go:build unix

package store

import "syscall"

// freeSpace returns the bytes free to this process on dir's filesystem.
func freeSpace(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
