// Package hq is HQ's read model: a durable JetStream consumer of a
// changelog stream (FIELDSYNC_CHANGES of one syncd, a region's
// FIELDSYNC_CHANGES_<REGION>, or FIELDSYNC_HQ, which sources every
// region's: FollowConfig.Stream) with explicit acks that keeps its own
// SQLite database of plain tables (schema.sql: households, visits,
// disputes with their history, needs, projects, events, units, people,
// links, devices; each row with the region it came from) for the HQ page
// (hq/report, hq/web) and for any SQL or BI tool. It is built from the
// stream alone, applies each change only if it is newer than what it holds
// (so a redelivery or a replay changes nothing), keeps lineage and change
// numbers per region (table regions), reloads one region when its stream
// is rebuilt under another lineage, and reloads everything from the start
// when the stream it follows is rebuilt. EnsureHQStream makes FIELDSYNC_HQ.
package hq
