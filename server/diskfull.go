package server

import (
	"errors"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/store"
)

// DiskFullRetry is how long a device is asked to wait after a push the
// server could not store for lack of disk space.
const DiskFullRetry = 30 * time.Second

// diskFullLogEvery bounds how often a full disk is logged: every failed
// write would flood the log while the disk stays full.
const diskFullLogEvery = time.Minute

const diskFullSync = "server out of disk space: nothing was applied; the work is kept on the device and syncs when space is freed (tell the server's operator)"

// diskFullLog rate-limits the log of a full disk.
type diskFullLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int // failures not logged since the last line
}

// diskFull logs a write that failed on a full disk (at error level, at most
// once a minute, counting the failures in between) and returns the status
// for its caller: ResourceExhausted with a RetryInfo, so that a device
// keeps its work and comes back later by itself, and msg says why.
func (s *Server) diskFull(what, msg string, err error) error {
	l := &s.diskFullLog
	l.mu.Lock()
	now := time.Now()
	if l.last.IsZero() || now.Sub(l.last) >= diskFullLogEvery {
		s.log.Error("out of disk space: writes fail until space is freed on the database's filesystem; nothing acknowledged is lost",
			"write", what, "err", err, "failed_since_last_log", l.missed)
		l.last, l.missed = now, 0
	} else {
		l.missed++
	}
	l.mu.Unlock()
	return retryAfter(DiskFullRetry, "%s", msg)
}

// isDiskFull reports a write the store could not make for lack of space.
func isDiskFull(err error) bool { return errors.Is(err, store.ErrDiskFull) }
