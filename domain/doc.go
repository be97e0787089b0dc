// Package domain holds the rules that the server and the devices share:
// record kinds and their fields, validation, hybrid logical clocks, the merge
// rules of each kind, dispute status transitions, event hash chains, buckets
// and who may write what.
//
// Both sides call these functions; neither copies them. The server applies a
// mutation with Apply to the authoritative record; a device applies the same
// mutation with Apply to its local view so that the user sees the result at
// once, and adopts the server's canonical record at the next sync.
package domain
