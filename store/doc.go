// Package store keeps fieldsync's data in SQLite through modernc.org/sqlite
// (pure Go, no cgo), for both sides:
//
//   - Server: the authoritative database of syncd. Records, the changes
//     table (the changelog the relay publishes), devices, org and
//     assignments. One writer goroutine commits concurrent writes together
//     (group commit) with synchronous=FULL; readers use their own pool and
//     see committed snapshots (WAL).
//   - Replica: a device's local database: its copy of the records in scope,
//     the durable outbox of numbered mutations, cursors and conflicts.
//
// The package holds schemas, migrations and queries only; the rules of what
// to write live in package domain, the sync logic in server and syncer.
package store
