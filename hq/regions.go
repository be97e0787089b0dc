package hq

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Regions (issue 16). A model may follow one syncd's changelog or HQ's
// stream FIELDSYNC_HQ, which sources every region's stream: messages of
// several regions interleaved, each region's in its own order, each with
// the header Fieldsync-Region ("" for a syncd run without a region).
// Change numbers, lineages and record versions count per region, so the
// model keeps them per region (table regions) and every row says which
// region it came from (column region). A region rebuilt under another
// lineage (a standby restored and took over, or its stream was rebuilt)
// has its own rows emptied and loaded again from the changes that follow;
// the other regions' rows stay.

// regionsMigration is migration 4: the regions table (its first row, for
// region "", from meta's lineage and last_seq of a model built before),
// and the region column on every table whose rows come from one region.
var regionsMigration = `
CREATE TABLE regions (
	region TEXT PRIMARY KEY, lineage TEXT NOT NULL, last_seq INTEGER NOT NULL,
	stream_seq INTEGER NOT NULL, rebuilt_ms INTEGER NOT NULL);
INSERT INTO regions (region, lineage, last_seq, stream_seq, rebuilt_ms)
	SELECT '', coalesce((SELECT value FROM meta WHERE key = 'lineage'), ''),
		CAST((SELECT value FROM meta WHERE key = 'last_seq') AS INTEGER),
		CAST(coalesce((SELECT value FROM meta WHERE key = 'stream_seq'), '0') AS INTEGER), 0
	WHERE CAST(coalesce((SELECT value FROM meta WHERE key = 'last_seq'), '0') AS INTEGER) > 0;
DELETE FROM meta WHERE key IN ('lineage', 'last_seq');
` + regionColumnsSQL()

// regionTables are the tables with a region column (each indexed on it);
// link_history, status_history and entries are emptied through their
// parent's rows.
var regionTables = []string{"units", "people", "links", "households", "visits", "disputes", "needs", "projects", "events", "devices", "refused_events", "attachments"}

func regionColumnsSQL() string {
	s := ""
	for _, t := range regionTables {
		s += "ALTER TABLE " + t + " ADD COLUMN region TEXT NOT NULL DEFAULT '';\n"
	}
	for _, t := range regionTables {
		s += "CREATE INDEX " + t + "_region ON " + t + " (region);\n"
	}
	return s
}

// RegionState is where the model stands in one region's changelog.
type RegionState struct {
	// Region is the region's name ("" for a syncd run without a region).
	Region string `json:"region"`
	// Lineage is the lineage of the region's changes applied.
	Lineage string `json:"lineage"`
	// LastSeq is the region's last change number applied.
	LastSeq uint64 `json:"last_seq"`
	// StreamSeq is the followed stream's sequence of the region's last
	// message processed.
	StreamSeq uint64 `json:"stream_seq"`
	// RebuiltMs is when the region's rows were last emptied for another
	// lineage (0: never).
	RebuiltMs int64 `json:"rebuilt_ms"`
}

// Regions is where the model stands in each region, by region name.
func (m *Model) Regions() []RegionState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]RegionState, 0, len(m.regions))
	for _, r := range m.regions {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out
}

// Region is where the model stands in region r (ok false: nothing of r
// applied).
func (m *Model) Region(r string) (RegionState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.regions[r]
	return s, ok
}

func (m *Model) loadRegions(ctx context.Context) error {
	rows, err := m.w.QueryContext(ctx, "SELECT region, lineage, last_seq, stream_seq, rebuilt_ms FROM regions")
	if err != nil {
		return fmt.Errorf("hq: read regions: %w", err)
	}
	defer rows.Close()
	m.regions = map[string]RegionState{}
	for rows.Next() {
		var r RegionState
		if err := rows.Scan(&r.Region, &r.Lineage, &r.LastSeq, &r.StreamSeq, &r.RebuiltMs); err != nil {
			return fmt.Errorf("hq: read regions: %w", err)
		}
		m.regions[r.Region] = r
	}
	return rows.Err()
}

// ResetRegion empties region r's rows and forgets its lineage and change
// numbers, leaving the other regions' rows: r's changes are applied again
// from the next one given (its first, from a stream rebuilt under another
// lineage). Follow does it by itself, in the transaction of the message
// that carries a region's new lineage. Called by hand on a model that
// Follow keeps, the region's messages already read are not read again:
// Reset instead to reload everything.
func (m *Model) ResetRegion(ctx context.Context, r string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("hq: reset region: the model is closed")
	}
	tx, err := m.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("hq: reset region %q: %w", r, err)
	}
	defer tx.Rollback()
	st := m.state()
	if err := st.resetRegion(ctx, newTxc(tx), r); err != nil {
		return err
	}
	if err := st.save(ctx, newTxc(tx)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("hq: reset region %q: commit: %w", r, err)
	}
	m.adopt(st)
	return nil
}

// resetRegion empties region r's rows in tx. The coverage triggers are
// dropped meanwhile (a row at a time otherwise) and r's share of the built
// months taken out by its towns; if one of r's towns also holds another
// region's households (ids never collide, but a town id may be reused),
// every built month is unbuilt instead, to be built again when asked for.
func (st *applyState) resetRegion(ctx context.Context, tx *txc, r string) error {
	exec := func(q string, args ...any) error {
		if _, err := tx.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("hq: reset region %q: %w", r, err)
		}
		return nil
	}
	for _, t := range coverageTriggerNames {
		if err := exec("DROP TRIGGER IF EXISTS " + t); err != nil {
			return err
		}
	}
	var shared int
	if err := tx.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM households WHERE region <> ?1
		AND town_id IN (SELECT town_id FROM households WHERE region = ?1))`, r).Scan(&shared); err != nil {
		return fmt.Errorf("hq: reset region %q: %w", r, err)
	}
	steps := []string{
		`DELETE FROM household_months WHERE household_id IN (SELECT id FROM households WHERE region = ?1 UNION SELECT household_id FROM visits WHERE region = ?1)`,
	}
	if shared == 1 {
		steps = append(steps, `DELETE FROM coverage_grids`, `DELETE FROM coverage_months`,
			`UPDATE coverage_state SET built = 0, built_ms = 0`)
	} else {
		steps = append(steps,
			`DELETE FROM coverage_grids WHERE town_id IN (SELECT town_id FROM households WHERE region = ?1)`,
			`DELETE FROM coverage_months WHERE town_id IN (SELECT town_id FROM households WHERE region = ?1)`)
	}
	steps = append(steps,
		`DELETE FROM link_history WHERE household_id IN (SELECT household_id FROM links WHERE region = ?1)`)
	for _, t := range []string{"households", "visits", "disputes", "needs", "projects", "events"} {
		steps = append(steps,
			`DELETE FROM status_history WHERE record_id IN (SELECT id FROM `+t+` WHERE region = ?1)`,
			`DELETE FROM entries WHERE record_id IN (SELECT id FROM `+t+` WHERE region = ?1)`)
	}
	for _, t := range regionTables {
		steps = append(steps, `DELETE FROM `+t+` WHERE region = ?1`)
	}
	for _, q := range steps {
		var args []any
		if strings.Contains(q, "?1") {
			args = []any{r}
		}
		if err := exec(q, args...); err != nil {
			return err
		}
	}
	if err := exec(coverageTriggersSQL); err != nil {
		return err
	}
	st.own()
	st.regions[r] = RegionState{Region: r, RebuiltMs: time.Now().UnixMilli()}
	st.changed[r] = true
	st.dirty = true
	return nil
}

// idRegionError is an id that another region holds already: ids never
// collide across regions (the prefix rule, UUIDv7), so this is a
// misconfiguration, which the model logs and skips rather than let one
// region overwrite another's row.
func idRegionError(what, id, theirs, held string) error {
	return &badChangeError{fmt.Sprintf("%s %q arrived from region %q, and the model holds it from region %q: "+
		"ids never collide across regions (each region's administrator ids start with its name and a dash); "+
		"the change is skipped: look for two regions given the same org files", what, id, theirs, held)}
}

// checkRegion refuses a change of region r to the row of table keyed by
// key = id if another region holds it.
func checkRegion(ctx context.Context, tx *txc, table, key, what, id, r string) error {
	var held string
	err := tx.QueryRowContext(ctx, "SELECT region FROM "+table+" WHERE "+key+" = ?", id).Scan(&held)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	case held != r:
		return idRegionError(what, id, r, held)
	}
	return nil
}

// regionSum is LastSeq over regions.
func regionSum(rs map[string]RegionState) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.LastSeq
	}
	return n
}

func formatU(n uint64) string { return strconv.FormatUint(n, 10) }

// counted counts change seq of region r as applied (a change skipped).
func (st *applyState) counted(r string, seq uint64) {
	if rs := st.regions[r]; seq > rs.LastSeq {
		st.own()
		rs.Region, rs.LastSeq = r, seq
		st.regions[r], st.changed[r], st.dirty = rs, true, true
	}
}

// markStream notes message n as region r's last message processed.
func (st *applyState) markStream(r string, n uint64) {
	st.own()
	rs := st.regions[r]
	rs.Region, rs.StreamSeq = r, n
	st.regions[r], st.changed[r], st.dirty = rs, true, true
}
