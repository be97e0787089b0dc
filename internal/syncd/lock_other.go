//go:build !unix

package syncd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// LockDataDir takes the lock on dir by creating the lock file exclusively.
// Without flock, a lock left by a syncd that crashed stays: the error says
// to delete it once no syncd runs.
func LockDataDir(dir string) (*DataLock, error) {
	path := lockPath(dir)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w (if no syncd runs, it crashed: delete %s)", lockedError(dir, path, nil), path)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	l := &DataLock{f: f, path: path}
	if err := l.writePID(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("lock data directory %s: write pid to %s: %w", dir, path, err)
	}
	return l, nil
}

// Unlock releases the lock by removing the file.
func (l *DataLock) Unlock() error {
	return errors.Join(l.f.Close(), os.Remove(l.path))
}
