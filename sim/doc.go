// Package sim is a deterministic simulation of a small city's field
// devices against the real server and device code: store, merge rules,
// the Sync handler over real gRPC, the relay to an embedded JetStream, and
// the syncer with its SQLite replicas. Everything random — the org, the
// work each device does, when it is offline, its clock skew, every network
// fault, server restarts, app kills, scope changes and revocations — is
// drawn from one seed, and a single goroutine drives the world one action
// at a time, so a seed replays the same history.
//
// After the faults stop and every device has synced to completion, Check
// verifies the invariants of DESIGN.md: nothing acknowledged lost and
// nothing applied twice, every replica equal to the server's state for its
// scope, the changelog holding each change once and replaying to the
// server's state, event chains intact, concurrent edits kept as conflicts.
//
// Limits of the model, on purpose: a server "crash" stops the server
// between actions (in-flight requests are never cut inside a SQLite
// transaction: SQLite's atomic commit makes that a rollback, which the
// SIGKILL test in e2e exercises for real); an app kill is modelled as an
// aborted local transaction followed by a reopen of the device database.
package sim
