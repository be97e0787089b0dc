//go:build !unix

package store

// freeSpace is unknown here: only SQLITE_FULL says the disk is full.
func freeSpace(string) (uint64, bool) { return 0, false }
