package fieldsync

import (
	"errors"
	"syscall"

	"modernc.org/sqlite"
)

// isDiskFull says err is SQLite's SQLITE_FULL, or a write that failed
// with ENOSPC: the replica's disk is full (store.ErrDiskFull covers only
// syncd's database).
func isDiskFull(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == 13 { // SQLITE_FULL
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// isSQLite says err comes from SQLite.
func isSQLite(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se)
}
