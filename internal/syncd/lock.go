package syncd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// LockFile is the name of the lock in the data directory. It holds the pid
// of the syncd (or syncd restore) that holds it.
const LockFile = "syncd.lock"

// ErrLocked says that another process holds the data directory.
var ErrLocked = errors.New("data directory in use")

// lockedErr is ErrLocked with the details.
type lockedErr struct{ msg string }

func (e *lockedErr) Error() string        { return e.msg }
func (e *lockedErr) Is(target error) bool { return target == ErrLocked }

// DataLock is the exclusive hold on a data directory: one syncd per
// directory, since two would be two writers on one database and two
// JetStream servers on one store.
type DataLock struct {
	f    *os.File
	path string
}

// lockedError names the directory, the lock and its holder, and says what
// to do.
func lockedError(dir, path string, f *os.File) error {
	holder := "a process whose pid the lock does not say"
	if b, err := readAll(f, path); err == nil {
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(b))); err == nil && pid > 0 {
			holder = "pid " + strconv.Itoa(pid)
		}
	}
	return &lockedErr{fmt.Sprintf("data directory %s is in use by another syncd (%s, lock %s): stop it first, or give this one another -data", dir, holder, path)}
}

func readAll(f *os.File, path string) ([]byte, error) {
	if f != nil {
		if _, err := f.Seek(0, 0); err == nil {
			var buf bytes.Buffer
			_, err := buf.ReadFrom(f)
			return buf.Bytes(), err
		}
	}
	return os.ReadFile(path)
}

// writePID records who holds the lock.
func (l *DataLock) writePID() error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return err
	}
	return l.f.Sync()
}

func lockPath(dir string) string { return filepath.Join(dir, LockFile) }
