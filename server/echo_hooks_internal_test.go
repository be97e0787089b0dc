package server

import "testing"

// BetweenPushAndPull runs f in every Sync after its push commits and
// before its answer is read, until the test ends: a test changes a record
// there, as another device syncing at that moment would.
func BetweenPushAndPull(t testing.TB, f func()) {
	betweenPushAndPull.Store(&f)
	t.Cleanup(func() { betweenPushAndPull.Store(nil) })
}
