// Package hq is HQ's read model: a durable JetStream consumer of the
// changelog (FIELDSYNC_CHANGES) with explicit acks that keeps its own
// SQLite database of plain tables (schema.sql: households, visits,
// disputes with their history, needs, projects, events, units, people,
// links, devices) for the HQ page (hq/report, hq/web) and for any SQL or BI
// tool. It is built from the stream alone, applies each change only if it
// is newer than what it holds (so a redelivery or a replay changes
// nothing), and reloads from the start when the stream is rebuilt under
// another lineage.
package hq
