// Package fieldsync is the phone SDK: syncer (the device engine) as a
// library an Android or iOS app embeds through gomobile
// (`gomobile bind github.com/fieldsync/fieldsync/mobile/fieldsync`).
//
// Its exported surface keeps to gobind's types: strings, signed integers,
// bool, []byte, error, *Client and the Listener interface the app
// implements. Records, lists, reports and statuses cross as JSON strings
// whose shapes are the structs of package schema (mobile/fieldsync/schema)
// and README's table "The phone SDK"; queries and fields go in as JSON too.
// Time limits are milliseconds instead of contexts.
//
// Every error's message starts with a stable code, "<code>: <text>"
// (CodeRetryLater, CodeOutOfSpace, ...): ErrorCode(message) extracts it so
// that Kotlin or Swift can switch on it, RetryAfterMillis(message) says how
// long a retry_later asks to wait.
//
// A Client is safe for use from several threads at once. Writes work
// offline; SyncOnce (for Android WorkManager and iOS BGTaskScheduler)
// syncs once within a time limit; StartForeground keeps a connection and
// hears the server's pokes while the app is on screen.
package fieldsync
