package hq

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The coverage tables: what HQ's coverage page reads instead of scanning
// households, link_history and visits for every month it shows.
//
//   - household_months: per month and household, the number of the
//     household's non-voided visits of that month (rows with 0 are
//     removed). Kept exact by triggers on visits, whoever writes them.
//   - coverage_state: the months whose coverage is built (built = 1): for
//     those, coverage_months holds it and triggers keep it exact. end_ms
//     is the month's last ms (China time): links are read there.
//   - coverage_months: per built month and (grid, member, town, village)
//     of the household (its own columns; the member it was linked to at
//     end_ms), the households not voided linked (linked) and those of them
//     with a visit that month (visited). Rows with linked 0 are removed.
//   - coverage_grids: coverage_months summed per grid (with the town and
//     village), kept by triggers on coverage_months.
//
// A month is built by BuildCoverage (the report does it when a page first
// needs it); from then on every write to visits, households or
// link_history moves its counts in the same transaction, by triggers, so
// the model's Apply, a bulk load written straight into the tables and a
// test's INSERT all keep them exact. A link_history row deleted or
// changed (which Apply never does) unbuilds the months from its date on;
// they are built again when next asked for.
//
// The current month is built with links read at its end; the report
// reads links at "now" for it, which is the same unless a link is dated
// after now within the month (a clock ahead): then the report counts that
// month from the base tables.

// memberAt is the SQL of the member household hid was linked to at time
// at: the member_id of its last link_history row (by from_ms, then seq)
// with from_ms <= at; NULL if none. extra adds a condition on l.
func memberAt(hid, at, extra string) string {
	return `(SELECT l.member_id FROM link_history l WHERE l.household_id = ` + hid + ` AND l.from_ms <= ` + at + extra +
		` ORDER BY l.from_ms DESC, l.seq DESC LIMIT 1)`
}

// coverageTablesSQL creates the coverage tables (migration 2).
const coverageTablesSQL = `
CREATE TABLE household_months (
	month TEXT NOT NULL, household_id TEXT NOT NULL, visits INTEGER NOT NULL,
	PRIMARY KEY (month, household_id)) WITHOUT ROWID;
CREATE TABLE coverage_state (
	month TEXT PRIMARY KEY, end_ms INTEGER NOT NULL, built INTEGER NOT NULL, built_ms INTEGER NOT NULL);
CREATE TABLE coverage_months (
	month TEXT NOT NULL, grid_id TEXT NOT NULL, member_id TEXT NOT NULL, town_id TEXT NOT NULL, village_id TEXT NOT NULL,
	linked INTEGER NOT NULL, visited INTEGER NOT NULL,
	PRIMARY KEY (month, grid_id, member_id, town_id, village_id)) WITHOUT ROWID;
CREATE TABLE coverage_grids (
	month TEXT NOT NULL, town_id TEXT NOT NULL, village_id TEXT NOT NULL, grid_id TEXT NOT NULL,
	linked INTEGER NOT NULL, visited INTEGER NOT NULL,
	PRIMARY KEY (month, town_id, village_id, grid_id)) WITHOUT ROWID;
CREATE INDEX coverage_grids_grid ON coverage_grids (grid_id, month);
CREATE INDEX link_history_at ON link_history (household_id, from_ms, seq, member_id);
CREATE INDEX link_history_from ON link_history (from_ms);
`

// coverageBackfillSQL fills household_months from the visits a model held
// before migration 2.
const coverageBackfillSQL = `
INSERT INTO household_months (month, household_id, visits)
	SELECT month, household_id, count(*) FROM visits WHERE voided = 0 AND month <> '' GROUP BY month, household_id;
`

// coverageTriggerNames are the triggers of coverageTriggersSQL (Reset
// drops them while it empties the tables, and makes them again).
var coverageTriggerNames = []string{
	"visits_months_insert", "visits_months_delete", "visits_months_update",
	"household_months_insert", "household_months_delete",
	"households_coverage_insert", "households_coverage_delete", "households_coverage_update",
	"link_history_coverage_insert", "link_history_coverage_delete", "link_history_coverage_update",
	"coverage_months_insert", "coverage_months_update", "coverage_months_delete",
}

// coverageTriggersSQL keeps household_months and the built months'
// coverage exact on every write to the base tables.
var coverageTriggersSQL = strings.NewReplacer(
	// The household's contribution to the built months: hh is NEW or OLD.
	"{old_contrib}", `SELECT s.month, OLD.grid_id, `+memberAt("OLD.id", "s.end_ms", "")+`, OLD.town_id, OLD.village_id
		FROM coverage_state s WHERE s.built = 1 AND OLD.voided = 0`,
	"{new_months}", `SELECT s.month, `+memberAt("NEW.id", "s.end_ms", "")+` AS mid FROM coverage_state s WHERE s.built = 1 AND NEW.voided = 0`,
	// For a link row inserted: each built month from its date on, the
	// member before the row and after it, of a household not voided.
	"{relinked}", `SELECT x.month, h.grid_id, x.before, x.after, h.town_id, h.village_id FROM (
			SELECT s.month, `+memberAt("NEW.household_id", "s.end_ms", " AND l.seq <> NEW.seq")+` AS before,
				`+memberAt("NEW.household_id", "s.end_ms", "")+` AS after
			FROM coverage_state s WHERE s.built = 1 AND s.end_ms >= NEW.from_ms) x
		JOIN households h ON h.id = NEW.household_id
		WHERE h.voided = 0 AND x.before IS NOT x.after`,
	"{hm_of}", `EXISTS (SELECT 1 FROM household_months hm WHERE hm.month = coverage_months.month AND hm.household_id = `,
).Replace(`
CREATE TRIGGER visits_months_insert AFTER INSERT ON visits WHEN NEW.voided = 0 AND NEW.month <> ''
BEGIN
	INSERT INTO household_months (month, household_id, visits) VALUES (NEW.month, NEW.household_id, 1)
		ON CONFLICT (month, household_id) DO UPDATE SET visits = visits + 1;
END;
CREATE TRIGGER visits_months_delete AFTER DELETE ON visits WHEN OLD.voided = 0 AND OLD.month <> ''
BEGIN
	UPDATE household_months SET visits = visits - 1 WHERE month = OLD.month AND household_id = OLD.household_id;
	DELETE FROM household_months WHERE month = OLD.month AND household_id = OLD.household_id AND visits <= 0;
END;
CREATE TRIGGER visits_months_update AFTER UPDATE OF household_id, month, voided ON visits
WHEN OLD.household_id IS NOT NEW.household_id OR OLD.month IS NOT NEW.month OR OLD.voided IS NOT NEW.voided
BEGIN
	INSERT INTO household_months (month, household_id, visits)
		SELECT NEW.month, NEW.household_id, 1 WHERE NEW.voided = 0 AND NEW.month <> ''
		ON CONFLICT (month, household_id) DO UPDATE SET visits = visits + 1;
	UPDATE household_months SET visits = visits - 1
		WHERE month = OLD.month AND household_id = OLD.household_id AND OLD.voided = 0 AND OLD.month <> '';
	DELETE FROM household_months WHERE month = OLD.month AND household_id = OLD.household_id AND visits <= 0;
END;

-- A household's first visit of a month, or its last one gone: visited
-- moves by one in that month, if built.
CREATE TRIGGER household_months_insert AFTER INSERT ON household_months
BEGIN
	UPDATE coverage_months SET visited = visited + 1
	WHERE (month, grid_id, member_id, town_id, village_id) IN (
		SELECT s.month, h.grid_id, ` + memberAt("h.id", "s.end_ms", "") + `, h.town_id, h.village_id
		FROM coverage_state s JOIN households h ON h.id = NEW.household_id
		WHERE s.month = NEW.month AND s.built = 1 AND h.voided = 0);
END;
CREATE TRIGGER household_months_delete AFTER DELETE ON household_months
BEGIN
	UPDATE coverage_months SET visited = visited - 1
	WHERE (month, grid_id, member_id, town_id, village_id) IN (
		SELECT s.month, h.grid_id, ` + memberAt("h.id", "s.end_ms", "") + `, h.town_id, h.village_id
		FROM coverage_state s JOIN households h ON h.id = OLD.household_id
		WHERE s.month = OLD.month AND s.built = 1 AND h.voided = 0);
END;

-- A household added, removed, voided or moved: its contribution leaves
-- its old place and joins its new one, in every built month.
CREATE TRIGGER households_coverage_insert AFTER INSERT ON households WHEN NEW.voided = 0
BEGIN
	INSERT INTO coverage_months (month, grid_id, member_id, town_id, village_id, linked, visited)
		SELECT x.month, NEW.grid_id, x.mid, NEW.town_id, NEW.village_id, 1,
			EXISTS (SELECT 1 FROM household_months hm WHERE hm.month = x.month AND hm.household_id = NEW.id)
		FROM ({new_months}) x WHERE x.mid <> ''
		ON CONFLICT (month, grid_id, member_id, town_id, village_id) DO UPDATE
			SET linked = linked + 1, visited = visited + excluded.visited;
END;
CREATE TRIGGER households_coverage_delete AFTER DELETE ON households WHEN OLD.voided = 0
BEGIN
	UPDATE coverage_months SET linked = linked - 1, visited = visited - {hm_of}OLD.id)
		WHERE (month, grid_id, member_id, town_id, village_id) IN ({old_contrib});
	DELETE FROM coverage_months WHERE linked <= 0 AND (month, grid_id, member_id, town_id, village_id) IN ({old_contrib});
END;
CREATE TRIGGER households_coverage_update AFTER UPDATE OF grid_id, village_id, town_id, voided ON households
WHEN (OLD.voided = 0 OR NEW.voided = 0) AND (OLD.grid_id IS NOT NEW.grid_id OR OLD.village_id IS NOT NEW.village_id
	OR OLD.town_id IS NOT NEW.town_id OR OLD.voided IS NOT NEW.voided OR OLD.id IS NOT NEW.id)
BEGIN
	UPDATE coverage_months SET linked = linked - 1, visited = visited - {hm_of}OLD.id)
		WHERE (month, grid_id, member_id, town_id, village_id) IN ({old_contrib});
	DELETE FROM coverage_months WHERE linked <= 0 AND (month, grid_id, member_id, town_id, village_id) IN ({old_contrib});
	INSERT INTO coverage_months (month, grid_id, member_id, town_id, village_id, linked, visited)
		SELECT x.month, NEW.grid_id, x.mid, NEW.town_id, NEW.village_id, 1,
			EXISTS (SELECT 1 FROM household_months hm WHERE hm.month = x.month AND hm.household_id = NEW.id)
		FROM ({new_months}) x WHERE x.mid <> ''
		ON CONFLICT (month, grid_id, member_id, town_id, village_id) DO UPDATE
			SET linked = linked + 1, visited = visited + excluded.visited;
END;

-- A link row added: in each built month from its date on where it
-- changes the member at the month's end, the household moves from the
-- member before to the member after.
CREATE TRIGGER link_history_coverage_insert AFTER INSERT ON link_history
BEGIN
	UPDATE coverage_months SET linked = linked - 1, visited = visited - {hm_of}NEW.household_id)
		WHERE (month, grid_id, member_id, town_id, village_id) IN (
			SELECT r.month, r.grid_id, r.before, r.town_id, r.village_id FROM ({relinked}) r);
	DELETE FROM coverage_months WHERE linked <= 0 AND (month, grid_id, member_id, town_id, village_id) IN (
			SELECT r.month, r.grid_id, r.before, r.town_id, r.village_id FROM ({relinked}) r);
	INSERT INTO coverage_months (month, grid_id, member_id, town_id, village_id, linked, visited)
		SELECT r.month, r.grid_id, r.after, r.town_id, r.village_id, 1,
			EXISTS (SELECT 1 FROM household_months hm WHERE hm.month = r.month AND hm.household_id = NEW.household_id)
		FROM ({relinked}) r WHERE r.after <> ''
		ON CONFLICT (month, grid_id, member_id, town_id, village_id) DO UPDATE
			SET linked = linked + 1, visited = visited + excluded.visited;
END;
-- A link row removed or rewritten (the model never does): the built
-- months from its date on are unbuilt, to be built again when asked for.
CREATE TRIGGER link_history_coverage_delete AFTER DELETE ON link_history
BEGIN
	DELETE FROM coverage_grids WHERE month IN (SELECT month FROM coverage_state WHERE built = 1 AND end_ms >= OLD.from_ms);
	DELETE FROM coverage_months WHERE month IN (SELECT month FROM coverage_state WHERE built = 1 AND end_ms >= OLD.from_ms);
	UPDATE coverage_state SET built = 0, built_ms = 0 WHERE built = 1 AND end_ms >= OLD.from_ms;
END;
CREATE TRIGGER link_history_coverage_update AFTER UPDATE ON link_history
WHEN OLD.household_id IS NOT NEW.household_id OR OLD.seq IS NOT NEW.seq OR OLD.member_id IS NOT NEW.member_id
	OR OLD.from_ms IS NOT NEW.from_ms
BEGIN
	DELETE FROM coverage_grids WHERE month IN (SELECT month FROM coverage_state WHERE built = 1 AND end_ms >= min(OLD.from_ms, NEW.from_ms));
	DELETE FROM coverage_months WHERE month IN (SELECT month FROM coverage_state WHERE built = 1 AND end_ms >= min(OLD.from_ms, NEW.from_ms));
	UPDATE coverage_state SET built = 0, built_ms = 0 WHERE built = 1 AND end_ms >= min(OLD.from_ms, NEW.from_ms);
END;

-- coverage_grids follows coverage_months.
CREATE TRIGGER coverage_months_insert AFTER INSERT ON coverage_months
BEGIN
	INSERT INTO coverage_grids (month, town_id, village_id, grid_id, linked, visited)
		VALUES (NEW.month, NEW.town_id, NEW.village_id, NEW.grid_id, NEW.linked, NEW.visited)
		ON CONFLICT (month, town_id, village_id, grid_id) DO UPDATE
			SET linked = linked + excluded.linked, visited = visited + excluded.visited;
END;
CREATE TRIGGER coverage_months_update AFTER UPDATE OF linked, visited ON coverage_months
BEGIN
	UPDATE coverage_grids SET linked = linked + NEW.linked - OLD.linked, visited = visited + NEW.visited - OLD.visited
		WHERE month = OLD.month AND town_id = OLD.town_id AND village_id = OLD.village_id AND grid_id = OLD.grid_id;
	DELETE FROM coverage_grids
		WHERE month = OLD.month AND town_id = OLD.town_id AND village_id = OLD.village_id AND grid_id = OLD.grid_id AND linked <= 0;
END;
CREATE TRIGGER coverage_months_delete AFTER DELETE ON coverage_months
BEGIN
	UPDATE coverage_grids SET linked = linked - OLD.linked, visited = visited - OLD.visited
		WHERE month = OLD.month AND town_id = OLD.town_id AND village_id = OLD.village_id AND grid_id = OLD.grid_id;
	DELETE FROM coverage_grids
		WHERE month = OLD.month AND town_id = OLD.town_id AND village_id = OLD.village_id AND grid_id = OLD.grid_id AND linked <= 0;
END;
`)

// coverageMigration is migration 2: the coverage tables, their triggers,
// household_months filled from the visits held.
var coverageMigration = coverageTablesSQL + coverageTriggersSQL + coverageBackfillSQL

// china is the time zone months are counted in.
var china = time.FixedZone("UTC+8", 8*3600)

var monthRe = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// MonthEnd is the last ms of month m (YYYY-MM, China time).
func MonthEnd(m string) (int64, error) {
	if !monthRe.MatchString(m) {
		return 0, fmt.Errorf("hq: month %q: want YYYY-MM", m)
	}
	t, err := time.ParseInLocation("2006-01", m, china)
	if err != nil {
		return 0, fmt.Errorf("hq: month %q: %w", m, err)
	}
	return t.AddDate(0, 1, 0).UnixMilli() - 1, nil
}

// buildMonthSQL counts month ?1's coverage (links read at ?2) from the
// base tables into coverage_months.
var buildMonthSQL = `INSERT INTO coverage_months (month, grid_id, member_id, town_id, village_id, linked, visited)
	SELECT ?1, h.grid_id, x.mid, h.town_id, h.village_id, count(*), count(hm.household_id)
	FROM (SELECT h.id, ` + memberAt("h.id", "?2", "") + ` AS mid FROM households h WHERE h.voided = 0) x
	JOIN households h ON h.id = x.id
	LEFT JOIN household_months hm ON hm.month = ?1 AND hm.household_id = x.id
	WHERE x.mid <> ''
	GROUP BY h.grid_id, x.mid, h.town_id, h.village_id`

// BuildCoverage builds month m's coverage (coverage_months and
// coverage_grids) from the base tables, unless it is built; from then on
// the triggers keep it. It writes through db in one transaction that
// takes SQLite's write lock first, so no change lands between the count
// and its storing (the model's writer waits for it: a city's month takes
// about a second). built says whether it built the month now.
func BuildCoverage(ctx context.Context, db *sql.DB, m string) (built bool, err error) {
	end, err := MonthEnd(m)
	if err != nil {
		return false, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
	}
	defer tx.Rollback()
	// A write first: the transaction holds the write lock from here on.
	if _, err := tx.ExecContext(ctx, `INSERT INTO coverage_state (month, end_ms, built, built_ms) VALUES (?, ?, 0, 0)
		ON CONFLICT (month) DO NOTHING`, m, end); err != nil {
		return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
	}
	var done int
	if err := tx.QueryRowContext(ctx, `SELECT built FROM coverage_state WHERE month = ?`, m).Scan(&done); err != nil {
		return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
	}
	if done == 1 {
		return false, tx.Commit()
	}
	for _, q := range []string{`DELETE FROM coverage_grids WHERE month = ?`, `DELETE FROM coverage_months WHERE month = ?`} {
		if _, err := tx.ExecContext(ctx, q, m); err != nil {
			return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
		}
	}
	if _, err := tx.ExecContext(ctx, buildMonthSQL, m, end); err != nil {
		return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE coverage_state SET built = 1, built_ms = ? WHERE month = ?`, time.Now().UnixMilli(), m); err != nil {
		return false, fmt.Errorf("hq: build coverage %s: %w", m, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("hq: build coverage %s: commit: %w", m, err)
	}
	return true, nil
}

// WarmCoverage builds the months HQ's coverage page first shows — the 12
// ending with now's month (China time) — that are not built yet, so that
// no page waits for them (about half a second a month for a whole city,
// once for the model's life; Reset empties them). An embedding may call it
// in a goroutine once the model has caught up. It returns how many months
// it built.
func (m *Model) WarmCoverage(ctx context.Context, now time.Time) (int, error) {
	cur := time.Date(now.In(china).Year(), now.In(china).Month(), 1, 0, 0, 0, 0, china)
	n := 0
	for i := 11; i >= 0; i-- {
		built, err := BuildCoverage(ctx, m.DB(), cur.AddDate(0, -i, 0).Format("2006-01"))
		if err != nil {
			return n, err
		}
		if built {
			n++
		}
	}
	return n, nil
}
