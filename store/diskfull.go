package store

import (
	"errors"
	"path/filepath"

	"modernc.org/sqlite"
)

// ErrDiskFull is a write that was not applied because the database's disk
// is full: retry once space is freed. Errors wrapping it also wrap
// SQLite's own error.
var ErrDiskFull = errors.New("store: the database's disk is full")

// SQLite's primary result codes that a full disk produces.
const (
	sqliteIOErr = 10 // SQLITE_IOERR: a write failed (ENOSPC while growing the WAL's index, for one)
	sqliteFull  = 13 // SQLITE_FULL
)

// lowSpace is the free space below which an I/O error is taken for a full
// disk.
const lowSpace = 1 << 20

type diskFullError struct{ err error }

func (e *diskFullError) Error() string   { return "out of disk space: " + e.err.Error() }
func (e *diskFullError) Unwrap() []error { return []error{ErrDiskFull, e.err} }

// classify returns err as an ErrDiskFull when SQLite said the disk is
// full, or failed to write while the database's filesystem has (almost)
// no space left; otherwise err itself.
func (s *Server) classify(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, ErrDiskFull) || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqliteFull:
		return &diskFullError{err}
	case sqliteIOErr:
		if free, ok := freeSpace(filepath.Dir(s.path)); ok && s.path != "" && free < lowSpace {
			return &diskFullError{err}
		}
	}
	return err
}
