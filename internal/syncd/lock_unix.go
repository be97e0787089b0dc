//go:build unix

package syncd

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// LockDataDir takes the exclusive lock on dir (which must exist), or fails
// at once if another process holds it. The kernel releases a flock when
// its holder exits, however it exits: a crashed syncd leaves no stale lock.
func LockDataDir(dir string) (*DataLock, error) {
	path := lockPath(dir)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockedError(dir, path, f)
		}
		return nil, fmt.Errorf("lock data directory %s (flock %s): %w", dir, path, err)
	}
	l := &DataLock{f: f, path: path}
	if err := l.writePID(); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory %s: write pid to %s: %w", dir, path, err)
	}
	return l, nil
}

// Unlock releases the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *DataLock) Unlock() error {
	return l.f.Close()
}
