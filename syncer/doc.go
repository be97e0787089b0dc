// Package syncer is the device-side engine that a field app embeds: a local
// SQLite replica of the records in the user's scope, a durable outbox of
// numbered mutations, and the sync loop that pushes them and pulls changes
// in one round trip, with backoff and resume.
//
// Every user action (record a visit, open a dispute, change its status, add
// a note, log an event) is a local transaction that works with no network:
// the mutation is validated with the shared domain rules, numbered, queued
// and applied to the local view at once. Sync sends the queue; the server's
// canonical records replace the local view, with the still-pending
// mutations applied on top. A mutation the server rejects stays in the
// outbox with its reason, shown on its record; it is never dropped.
//
// Files (photos, scans) attach to records the same way, offline (Attach,
// AttachFile): the bytes are kept in the replica, sealed, and the record
// names them at once. Sync sends records only; after a sync whose answer
// applied the attach, it uploads the files in chunks, resuming from what
// the server holds (UploadPending, attach_upload.go). Other phones get the
// reference with the record and fetch the bytes on demand
// (FetchAttachment).
//
// The exported surface keeps mostly to plain types (strings, ints,
// pointers to structs, errors); Fields is a small setter type instead of a
// map. It is not what a phone binds: the context.Context parameters,
// Options.DialOptions and Options.CrashPoint (Go-only: tests and
// simulations), Item.Record and Device.Pokes (a channel) are Go's. The
// gomobile binding is mobile/fieldsync: timeouts instead of contexts,
// JSON instead of structs, error codes an app switches on.
package syncer
