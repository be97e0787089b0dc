-- The HQ read model: plain tables any SQL or BI tool can read (sqlite3, a
-- spreadsheet's ODBC driver, Metabase, ...). Built only from the changelog
-- (FIELDSYNC_CHANGES) by package hq; documented in the README ("HQ read
-- model"). Times are ms since the epoch (UTC); dates are YYYY-MM-DD as the
-- phone entered them; a month is YYYY-MM (of a date, or of a time in
-- China time, UTC+8). Every row keeps the change number (seq / version)
-- that last wrote it: a change is applied only if its number is greater,
-- so a redelivered or replayed message changes nothing.

-- Where the model stands: lineage (of the stream it follows), last_seq
-- (the last change applied), consumer (its durable name), rebuilt_ms.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- The org: towns, villages and grids. kind: town | village | grid.
CREATE TABLE units (
	id TEXT PRIMARY KEY, kind TEXT NOT NULL, parent_id TEXT NOT NULL, name TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL, seq INTEGER NOT NULL);

-- People. role: member | mediator | secretary | hq. unit_id: a member's
-- grid, a mediator's or secretary's village (a town secretary's town);
-- empty for HQ.
CREATE TABLE people (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, unit_id TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL, disabled_ms INTEGER NOT NULL, seq INTEGER NOT NULL);

-- Each household's current link (member_id '' = unlinked), since when.
CREATE TABLE links (
	household_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, since_ms INTEGER NOT NULL,
	by TEXT NOT NULL, seq INTEGER NOT NULL);
-- Every link change, dated: the member a household was linked to at a time
-- t is the member_id of its last row with from_ms <= t.
CREATE TABLE link_history (
	household_id TEXT NOT NULL, seq INTEGER NOT NULL, member_id TEXT NOT NULL,
	previous_member_id TEXT NOT NULL, from_ms INTEGER NOT NULL, by TEXT NOT NULL,
	PRIMARY KEY (household_id, seq));

-- Records. Common columns: version (the change number of the record's last
-- change), author_id, device_id (the device that created it), village_id,
-- town_id, created_ms (when the server first applied it, as far as the
-- model saw: the committed_ms of the first change it applied), updated_ms
-- (the committed_ms of its last change), voided (0|1) with void_reason and
-- voided_ms. The other columns are the record's fields, by the names of
-- domain/kinds.go.
CREATE TABLE households (
	id TEXT PRIMARY KEY, grid_id TEXT NOT NULL, village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	head TEXT NOT NULL, address TEXT NOT NULL, members INTEGER NOT NULL, tags TEXT NOT NULL,
	member_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);
CREATE INDEX households_grid ON households (grid_id);
CREATE INDEX households_village ON households (village_id);

-- month: the month of visited_on.
CREATE TABLE visits (
	id TEXT PRIMARY KEY, household_id TEXT NOT NULL, visited_on TEXT NOT NULL, month TEXT NOT NULL,
	met TEXT NOT NULL, needs TEXT NOT NULL, help TEXT NOT NULL, follow_up TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);
CREATE INDEX visits_month ON visits (month, household_id);
CREATE INDEX visits_household ON visits (household_id);

-- opened_ms: the server time of its creation (its first history line);
-- closed_ms: of its move to closed (0 while not closed); settled_ms: of
-- its move to agreed, failed, referred or withdrawn (0 before).
CREATE TABLE disputes (
	id TEXT PRIMARY KEY, category TEXT NOT NULL, title TEXT NOT NULL, status TEXT NOT NULL,
	result TEXT NOT NULL, level TEXT NOT NULL, occurred_on TEXT NOT NULL, agreed_on TEXT NOT NULL,
	household_id TEXT NOT NULL, visit_id TEXT NOT NULL, reported_by TEXT NOT NULL,
	mediators TEXT NOT NULL, parties TEXT NOT NULL, agreement TEXT NOT NULL, outcome TEXT NOT NULL,
	opened_ms INTEGER NOT NULL, settled_ms INTEGER NOT NULL, closed_ms INTEGER NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);

-- raised_ms: its creation; met_ms: its move to resolved (0 before).
CREATE TABLE needs (
	id TEXT PRIMARY KEY, household_id TEXT NOT NULL, visit_id TEXT NOT NULL, category TEXT NOT NULL,
	summary TEXT NOT NULL, detail TEXT NOT NULL, status TEXT NOT NULL, help TEXT NOT NULL,
	resolution TEXT NOT NULL, referral_reason TEXT NOT NULL, taken_by TEXT NOT NULL,
	raised_ms INTEGER NOT NULL, met_ms INTEGER NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);

-- households: the ids, comma-separated.
CREATE TABLE projects (
	id TEXT PRIMARY KEY, title TEXT NOT NULL, detail TEXT NOT NULL, leader_id TEXT NOT NULL,
	households TEXT NOT NULL, planned_on TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);

-- Events (三会一课, 主题党日, service requests...). type: meeting |
-- party_day | service_request | status_change | other; month: of
-- occurred_on. prev_hash and hash: the event's link in its device's chain.
CREATE TABLE events (
	id TEXT PRIMARY KEY, type TEXT NOT NULL, occurred_on TEXT NOT NULL, month TEXT NOT NULL,
	subject TEXT NOT NULL, detail TEXT NOT NULL, service_mode TEXT NOT NULL,
	prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	version INTEGER NOT NULL, author_id TEXT NOT NULL, device_id TEXT NOT NULL,
	created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
	voided INTEGER NOT NULL, void_reason TEXT NOT NULL, voided_ms INTEGER NOT NULL);
CREATE INDEX events_device ON events (device_id);

-- Every status move of a dispute, need or project, in order (n from 0,
-- the creation: from_status '').
CREATE TABLE status_history (
	record_id TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL,
	from_status TEXT NOT NULL, to_status TEXT NOT NULL, at_ms INTEGER NOT NULL, author_id TEXT NOT NULL,
	PRIMARY KEY (record_id, n));

-- Appended list entries (a dispute's notes and sessions, a need's notes, a
-- project's progress), in clock order (n from 0).
CREATE TABLE entries (
	record_id TEXT NOT NULL, field TEXT NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL,
	author_id TEXT NOT NULL, PRIMARY KEY (record_id, field, n));

-- Devices and their health as last published.
CREATE TABLE devices (
	id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, app_version TEXT NOT NULL,
	enrolled_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, pending INTEGER NOT NULL,
	revoked_ms INTEGER NOT NULL, restored_ms INTEGER NOT NULL, restores INTEGER NOT NULL,
	last_seq INTEGER NOT NULL, seq INTEGER NOT NULL);

-- Events the server refused, with their chain links.
CREATE TABLE refused_events (
	device_id TEXT NOT NULL, device_seq INTEGER NOT NULL, user_id TEXT NOT NULL, record_id TEXT NOT NULL,
	prev_hash TEXT NOT NULL, hash TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,
	seq INTEGER NOT NULL, PRIMARY KEY (device_id, device_seq));

-- Migration 2 (coverage.go) adds the coverage tables household_months,
-- coverage_state, coverage_months and coverage_grids, the triggers that
-- keep them, and indexes on link_history (household_id, from_ms, seq,
-- member_id) and (from_ms).

-- Migration 3 (attachments.go) adds attachments: one row per record and
-- attached file (record_id, sha256, n, kind, size, media_type, caption,
-- author_id, hlc, village_id, town_id): references only, never bytes.
