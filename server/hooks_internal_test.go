package server

// Hooks for the external tests (package server_test): they reach into the
// server where a real part cannot show what a test needs to see.

import (
	"testing"
	"time"
)

// SmallExportBatches bounds export messages to bytes of record bodies and
// records records until the test ends, so that a small database is
// exported in many messages. Call it before starting the server.
func SmallExportBatches(t testing.TB, bytes, records int) {
	b, r := exportBatchBytes, exportBatchRecords
	exportBatchBytes, exportBatchRecords = bytes, records
	t.Cleanup(func() { exportBatchBytes, exportBatchRecords = b, r })
}

// More hooks for the external tests (package server_test), which use testenv
// and so cannot live in this package.

// AuthCacheStats returns the auth cache's hits, misses and entries.
func AuthCacheStats(s *Server) (hits, misses uint64, entries int) { return s.auth.stats() }

// MoveAuthCacheClock moves the auth cache's clock forward by d.
func MoveAuthCacheClock(s *Server, d time.Duration) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	now := s.auth.now
	s.auth.now = func() time.Duration { return now() + d }
}

// DisableAuthCache makes every device call read the store, as before the
// cache (benchmarks compare the two).
func DisableAuthCache(s *Server) { s.auth = nil }
