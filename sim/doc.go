// Package sim is a deterministic simulation of a small city's field
// devices against the real server and device code: store, merge rules,
// the Sync handler over real gRPC, the relay to an embedded JetStream, and
// the syncer with its SQLite replicas. Everything random — the org, the
// work each device does, when it is offline, its clock skew, every network
// fault, server restarts, app kills, scope changes and revocations, and
// going back in time — is drawn from one seed, and a single goroutine
// drives the world one action at a time, so a seed replays the same
// history.
//
// Going back in time (restore.go): the server's database is backed up
// now and then while it serves (VACUUM INTO through a read connection; the
// last 4 backups are kept with their step), and a fault puts one back,
// N steps old: the server stops, the backup replaces its database, and
// it starts again on the same directory, address and token. Half the
// time the database is rebased first (store.Rebase, as `syncd restore`
// does); otherwise the relay's check at start must find the stream ahead
// and rebase it (the simulation fails the seed if the lineage stayed).
// A phone's database file is copied now and then (the app closed), and a
// fault puts the copy back over it. After either, reconcile recomputes
// what must survive for each device: everything the server answered, plus
// what the device still holds and will send again (acknowledged work is
// kept 30 days, but leaves with a record that leaves the device's scope:
// what the server then lost is gone, by design), less what the server
// already holds (by its content hash); an appended note must end on the server if the server holds it
// or the device will send it; a phone's writes after its copy that never
// reached the server are gone, as they would be for a user.
//
// After the faults stop and every device has synced to completion, Check
// verifies the invariants of DESIGN.md: nothing acknowledged lost and
// nothing applied twice (the server answered each of a device's numbers
// once, as many as must survive), every replica equal to the server's
// state for its scope, the changelog holding each change once, equal to
// SQLite change by change, and replaying to the server's state, event
// chains intact, concurrent edits kept as conflicts.
//
// The work of the field (field.go) takes a share of each role's work:
// members raise needs (from a visit, with its household, sometimes going
// offline after), report quarrels and hazards, lead projects and record
// their progress; secretaries take needs up, refer and resolve them, make
// and complete projects, relink households (household.member_id);
// mediators pick up the reports that reach them; authors and secretaries
// void duplicates; anyone settles a conflict from the inbox. Check
// (check_field.go) adds: a voided record is voided alike on the server
// and every device holding it, no change after its void altered it (in
// the changelog), and a void queued stands unless refused; every status
// history, on the server, in every version of the changelog and on every
// device, starts "" -> start, moves along the kind's machine from the
// status the entry before reached, and ends at the record's status;
// nothing acknowledged lost extends to the records made and the status
// moves queued (in the history, or kept as a status conflict); the links
// table follows household.member_id; the conflicts a device settled are
// gone everywhere; each device holds what its user must see of the new
// kinds, by the permission table's read side computed from the records
// (not the server's scope). A settle, a move or a create made before the last
// restore (server or phone) is not checked by these: the edit that made a
// settled conflict may be applied again after a restore, and what went
// back in time is counted exactly by reconcile instead.
//
// Limits of the model, on purpose: a server "crash" stops the server
// between actions (in-flight requests are never cut inside a SQLite
// transaction: SQLite's atomic commit makes that a rollback, which the
// SIGKILL test in e2e exercises for real); an app kill is modelled as an
// aborted local transaction followed by a reopen of the device database.
// A server backup is never put back across an org change (a reassignment,
// a grid move, a revocation: the backups are dropped then), which an
// operator restoring would have to make again. Requests held in the
// network do not outlive a restore (the server's connections die with it;
// the restored phone's old requests with the old phone). A concurrent
// edit lost to a restore before it reached the server is not checked. A
// phone's copy is put back once, and a restored phone is not copied again
// before it has synced to the end: either way the copy would hold the
// replica id the restored phone gives up at that sync, and putting it back
// later is, to the server, a second phone running the same old copy (a
// clone), stopped until enrolled again, by design.
package sim
