package hq

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

//go:embed schema.sql
var schemaSQL string

// migrations are the model database's schema steps, run once each in
// order (tracked by PRAGMA user_version): the first is schema.sql; a later
// column or table is appended here, never edited into an earlier step.
var migrations = []string{
	schemaSQL + fmt.Sprintf("\nPRAGMA application_id = %d;\n", applicationID),
	coverageMigration,    // coverage.go: household_months, coverage_*, their triggers
	attachmentsMigration, // attachments.go: the files' references
	regionsMigration,     // regions.go: the regions table, the region columns
}

// applicationID marks a read model's file ("FSHQ"), so that Open refuses
// syncd's or a device's database given by mistake.
const applicationID = 0x46534851

// ErrOtherLineage is returned by Apply for a change of another lineage
// than the one the model holds: the stream was rebuilt from another
// database; Reset the model and load it again from the start.
var ErrOtherLineage = errors.New("hq: change of another lineage")

// Model is HQ's read model: one SQLite file, one writer (Apply, Reset,
// Follow), any number of readers (DB).
type Model struct {
	path string
	w    *sql.DB // the one writer connection
	r    *sql.DB // the pool DB returns

	mu        sync.Mutex             // serializes writes
	streamSeq uint64                 // meta stream_seq
	regions   map[string]RegionState // table regions; replaced, never changed in place
	gen       uint64                 // bumped by Reset: a running Follow starts over
	closed    bool
}

func dsn(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	// A row replaced (INSERT OR REPLACE) fires the delete triggers that keep
	// the coverage tables (coverage.go).
	q.Add("_pragma", "recursive_triggers(1)")
	if writer {
		q.Set("_txlock", "immediate")
		q.Add("_pragma", "temp_store(memory)")
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens the read model in the SQLite file path, creating it and
// bringing its schema up to date. The database runs in WAL mode with one
// writer connection (the model's); DB returns a separate pool for queries.
func Open(path string) (*Model, error) {
	if path == "" {
		return nil, errors.New("hq: open: path is empty: want the model database's file name")
	}
	ctx := context.Background()
	w, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("hq: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	m := &Model{path: path, w: w}
	if err := m.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	if err := m.loadMeta(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("hq: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	m.r = r
	return m, nil
}

func (m *Model) migrate(ctx context.Context) error {
	var version, appID int
	if err := m.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("hq: open %s: %w", m.path, err)
	}
	if err := m.w.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("hq: open %s: %w", m.path, err)
	}
	switch {
	case appID != 0 && appID != applicationID:
		return fmt.Errorf("hq: %s is not an HQ read model (application_id %#x, a read model's is %#x): give the model its own file", m.path, appID, applicationID)
	case appID == 0 && version != 0:
		return fmt.Errorf("hq: %s is another SQLite database (schema version %d, no read model mark): give the model its own file", m.path, version)
	case version > len(migrations):
		return fmt.Errorf("hq: %s has schema version %d, this build knows up to %d: use a newer fieldsync, or delete the file to rebuild the model", m.path, version, len(migrations))
	}
	if err := store.Migrate(ctx, m.w, migrations); err != nil {
		return fmt.Errorf("hq: migrate %s: %w", m.path, err)
	}
	return nil
}

func (m *Model) loadMeta(ctx context.Context) error {
	rows, err := m.w.QueryContext(ctx, "SELECT key, value FROM meta")
	if err != nil {
		return fmt.Errorf("hq: read meta: %w", err)
	}
	defer rows.Close()
	m.streamSeq = 0
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if k == "stream_seq" {
			m.streamSeq, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return m.loadRegions(ctx)
}

// DB is a pool of connections to the model's database for queries (the
// report, tests, benchmarks). The model writes through its own connection;
// anything written through this pool while Follow runs competes with it
// for SQLite's one write lock.
func (m *Model) DB() *sql.DB { return m.r }

// Path is the model database's file name.
func (m *Model) Path() string { return m.path }

// Close closes the database. Stop Follow first (end its context).
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return errors.Join(m.r.Close(), m.w.Close())
}

// LastSeq is the last change number applied, summed over the regions
// (table regions): for a model of one syncd's changelog, its last change
// number; 0 for an empty model. Regions has each region's.
func (m *Model) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return regionSum(m.regions)
}

// StreamSeq is the followed stream's sequence of the last message
// processed (meta stream_seq): a model is caught up with its stream when
// it equals the stream's last sequence.
func (m *Model) StreamSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streamSeq
}

// Lineage is the lineage of the changes applied when they come from one
// region (one syncd); "" for an empty model, or one holding several
// regions (Regions has each one's).
func (m *Model) Lineage() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.regions) != 1 {
		return ""
	}
	for _, r := range m.regions {
		return r.Lineage
	}
	return ""
}

// Apply applies one change of a syncd run without a region: ApplyRegion
// with region "".
func (m *Model) Apply(ctx context.Context, c *pb.Change, lineage string) error {
	return m.ApplyRegion(ctx, c, "", lineage)
}

// ApplyRegion applies one change of region (the Fieldsync-Region header;
// "" for none) in its own transaction. It is idempotent: a record replaces
// the row held only if record.version is greater than the row's version,
// an org row only if the change's seq is greater than the row's seq, so
// applying changes again, or in another order, ends in the same tables.
// lineage is the stream's (the Fieldsync-Lineage header): a change of
// another lineage than the one held for the region is refused with
// ErrOtherLineage (ResetRegion or Reset first); "" skips the check. A
// record, unit, person, household link or device that another region
// holds is refused (a badChangeError naming both regions).
func (m *Model) ApplyRegion(ctx context.Context, c *pb.Change, region, lineage string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("hq: apply: the model is closed")
	}
	tx, err := m.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("hq: apply: %w", err)
	}
	defer tx.Rollback()
	st := m.state()
	tc := newTxc(tx)
	if err := st.apply(ctx, tc, c, region, lineage); err != nil {
		return err
	}
	if err := st.save(ctx, tc); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("hq: apply change %d: commit: %w", c.GetSeq(), err)
	}
	m.adopt(st)
	return nil
}

// Reset empties every table, meta included: the model is rebuilt from
// scratch by the next changes applied (Follow reloads the stream from its
// first message). A running Follow notices and starts over.
func (m *Model) Reset(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("hq: reset: the model is closed")
	}
	tx, err := m.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("hq: reset: %w", err)
	}
	defer tx.Rollback()
	// The coverage triggers are dropped while the tables are emptied (a
	// row at a time otherwise), and made again.
	for _, t := range coverageTriggerNames {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+t); err != nil {
			return fmt.Errorf("hq: reset: %w", err)
		}
	}
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+t); err != nil {
			return fmt.Errorf("hq: reset: empty %s: %w", t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, coverageTriggersSQL); err != nil {
		return fmt.Errorf("hq: reset: coverage triggers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('rebuilt_ms', ?)", strconv.FormatInt(time.Now().UnixMilli(), 10)); err != nil {
		return fmt.Errorf("hq: reset: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("hq: reset: commit: %w", err)
	}
	m.streamSeq, m.regions = 0, map[string]RegionState{}
	m.gen++
	return nil
}

// tables are the model's tables, every one emptied by Reset.
var tables = []string{"meta", "regions", "units", "people", "links", "link_history", "households", "visits",
	"disputes", "needs", "projects", "events", "status_history", "entries", "devices", "refused_events",
	"household_months", "coverage_state", "coverage_months", "coverage_grids", "attachments"}

// applyState is the meta of one transaction: adopted by the model once it
// commits.
type applyState struct {
	streamSeq uint64
	regions   map[string]RegionState // the model's until own copies it
	owned     bool
	changed   map[string]bool // regions to write
	dirty     bool
}

func (m *Model) state() *applyState {
	return &applyState{streamSeq: m.streamSeq, regions: m.regions, changed: map[string]bool{}}
}

// own copies the regions before the first write to them.
func (st *applyState) own() {
	if st.owned {
		return
	}
	rs := make(map[string]RegionState, len(st.regions)+1)
	for k, v := range st.regions {
		rs[k] = v
	}
	st.regions, st.owned = rs, true
}

func (m *Model) adopt(st *applyState) {
	m.streamSeq, m.regions = st.streamSeq, st.regions
}

func (st *applyState) save(ctx context.Context, tx *txc) error {
	if !st.dirty {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('stream_seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", formatU(st.streamSeq)); err != nil {
		return fmt.Errorf("hq: write meta stream_seq: %w", err)
	}
	for r := range st.changed {
		s := st.regions[r]
		if _, err := tx.ExecContext(ctx, `INSERT INTO regions (region, lineage, last_seq, stream_seq, rebuilt_ms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (region) DO UPDATE SET lineage = excluded.lineage, last_seq = excluded.last_seq,
				stream_seq = excluded.stream_seq, rebuilt_ms = excluded.rebuilt_ms`,
			r, s.Lineage, s.LastSeq, s.StreamSeq, s.RebuiltMs); err != nil {
			return fmt.Errorf("hq: write region %q: %w", r, err)
		}
	}
	clear(st.changed)
	return nil
}

// apply writes change c of region into tx.
func (st *applyState) apply(ctx context.Context, tx *txc, c *pb.Change, region, lineage string) error {
	if c.GetSeq() == 0 {
		return &badChangeError{"hq: change.seq is 0: want the change number, 1 or more"}
	}
	if kind, id := orgID(c); region != "" && id != "" && !domain.RegionOwns(region, id) {
		owner := "no region's"
		if r := domain.RegionOfID(id); r != "" {
			owner = fmt.Sprintf("an id from region %q", r)
		}
		return &badChangeError{fmt.Sprintf("hq: change %d: %s %q arrived from region %q: %s (region %q's ids start with %q): skipped",
			c.GetSeq(), kind, id, region, owner, region, domain.RegionIDPrefix(region))}
	}
	rs := st.regions[region]
	if lineage != "" && rs.Lineage != lineage {
		if rs.Lineage != "" {
			return fmt.Errorf("%w: change %d of region %q is of lineage %q, the model holds %q: ResetRegion (or Reset) and load the region from the start", ErrOtherLineage, c.GetSeq(), region, lineage, rs.Lineage)
		}
		st.own()
		rs.Region, rs.Lineage = region, lineage
		st.regions[region], st.changed[region], st.dirty = rs, true, true
	}
	var err error
	switch {
	case c.GetRecord() != nil:
		err = applyRecord(ctx, tx, c, region)
	case c.GetUnit() != nil:
		err = applyUnit(ctx, tx, c, region)
	case c.GetPerson() != nil:
		err = applyPerson(ctx, tx, c, region)
	case c.GetLink() != nil:
		err = applyLink(ctx, tx, c, region)
	case c.GetDevice() != nil:
		err = applyDevice(ctx, tx, c, region)
	case c.GetRefused() != nil:
		err = applyRefused(ctx, tx, c, region)
	default:
		// A kind of change this build does not know (the contract: skip
		// it); its number still counts as applied.
	}
	if err != nil {
		return fmt.Errorf("hq: apply change %d of region %q: %w", c.GetSeq(), region, err)
	}
	if c.GetSeq() > rs.LastSeq {
		st.own()
		rs.Region, rs.LastSeq = region, c.GetSeq()
		st.regions[region], st.changed[region], st.dirty = rs, true, true
	}
	return nil
}

// orgID is the administrator-given id a change names (a unit, a person, a
// household's link, an imported household), "" for none: a region's
// changes may name only its own (domain.RegionOwns), so that one region's
// stream cannot claim or overwrite another region's units, people and
// households in the model.
func orgID(c *pb.Change) (kind, id string) {
	switch {
	case c.GetUnit() != nil:
		return "unit", c.GetUnit().GetUnit().GetId()
	case c.GetPerson() != nil:
		return "person", c.GetPerson().GetId()
	case c.GetLink() != nil:
		return "link of household", c.GetLink().GetHouseholdId()
	case c.GetRecord().GetKind() == pb.Kind_KIND_HOUSEHOLD && !domain.IsUUIDv7(c.GetRecord().GetId()):
		return "household", c.GetRecord().GetId()
	}
	return "", ""
}

// badChangeError is a change the model cannot apply, however often it
// tries: a field it needs is missing or unknown.
type badChangeError struct{ msg string }

func (e *badChangeError) Error() string { return e.msg }

// recordTable is where records of each kind go.
var recordTable = map[pb.Kind]string{
	pb.Kind_KIND_HOUSEHOLD: "households",
	pb.Kind_KIND_VISIT:     "visits",
	pb.Kind_KIND_DISPUTE:   "disputes",
	pb.Kind_KIND_NEED:      "needs",
	pb.Kind_KIND_PROJECT:   "projects",
	pb.Kind_KIND_EVENT:     "events",
}

func field(r *pb.Record, name string) string { return r.GetFields()[name].GetValue() }

// place is the village and town record r lies in: its own village_id
// field (disputes, events, needs, projects), else its v: bucket; its t:
// bucket, else the change's region.
func place(r *pb.Record, region string) (village, town string) {
	village = field(r, "village_id")
	for _, b := range r.GetBuckets() {
		switch {
		case village == "" && strings.HasPrefix(b, "v:"):
			village = b[2:]
		case town == "" && strings.HasPrefix(b, "t:"):
			town = b[2:]
		}
	}
	if town == "" && region != "none" {
		town = region
	}
	return village, town
}

// month is the YYYY-MM of a YYYY-MM-DD date ("" for anything else).
func month(date string) string {
	if len(date) >= 7 && date[4] == '-' {
		return date[:7]
	}
	return ""
}

func applyRecord(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	r := c.GetRecord()
	table, ok := recordTable[r.GetKind()]
	switch {
	case !ok:
		return &badChangeError{fmt.Sprintf("record.kind %v: want one of %s", r.GetKind(), strings.Join(domain.KindNames(), ", "))}
	case r.GetId() == "":
		return &badChangeError{"record.id is empty"}
	case r.GetVersion() == 0:
		return &badChangeError{fmt.Sprintf("record %s: record.version is 0: want its last change number", r.GetId())}
	}
	committed := c.GetCommittedMs()
	var held uint64
	var created int64
	var heldRegion string
	err := tx.QueryRowContext(ctx, "SELECT version, created_ms, region FROM "+table+" WHERE id = ?", r.GetId()).Scan(&held, &created, &heldRegion)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		created = committed
	case err != nil:
		return err
	case heldRegion != region:
		return idRegionError(domain.KindName(r.GetKind()), r.GetId(), region, heldRegion)
	default:
		// created_ms is the earliest commit seen of the record, whatever
		// the order the changes came in.
		if committed < created {
			created = committed
			if r.GetVersion() <= held {
				_, err := tx.ExecContext(ctx, "UPDATE "+table+" SET created_ms = ? WHERE id = ?", created, r.GetId())
				return err
			}
		}
		if r.GetVersion() <= held {
			return nil
		}
	}
	village, town := place(r, c.GetRegion())
	void := r.GetVoid()
	voided := 0
	if void != nil {
		voided = 1
	}
	common := []any{village, town, r.GetVersion(), r.GetAuthorId(), r.GetOriginDeviceId(),
		created, committed, voided, void.GetReason(), void.GetAtMs(), region}
	const commonCols = "village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms, region"
	var cols string
	var vals []any
	f := func(name string) string { return field(r, name) }
	hist := r.GetHistory()
	first := func() int64 {
		if len(hist) > 0 && hist[0].GetAtMs() != 0 {
			return hist[0].GetAtMs()
		}
		return created
	}
	// at is when the record first moved to one of statuses (0: never);
	// last: its last such move.
	at := func(last bool, statuses ...string) int64 {
		var t int64
		for _, h := range hist {
			for _, s := range statuses {
				if h.GetTo() == s && h.GetFrom() != h.GetTo() {
					if t == 0 || last {
						t = h.GetAtMs()
					}
				}
			}
		}
		return t
	}
	switch r.GetKind() {
	case pb.Kind_KIND_HOUSEHOLD:
		members, _ := strconv.Atoi(f("members"))
		cols = "id, grid_id, head, address, members, tags, member_id"
		vals = []any{r.GetId(), f("grid_id"), f("head"), f("address"), members, f("tags"), f("member_id")}
	case pb.Kind_KIND_VISIT:
		cols = "id, household_id, visited_on, month, met, needs, help, follow_up"
		vals = []any{r.GetId(), f("household_id"), f("visited_on"), month(f("visited_on")), f("met"), f("needs"), f("help"), f("follow_up")}
	case pb.Kind_KIND_DISPUTE:
		cols = "id, category, title, status, result, level, occurred_on, agreed_on, household_id, visit_id, reported_by, mediators, parties, agreement, outcome, opened_ms, settled_ms, closed_ms"
		vals = []any{r.GetId(), f("category"), f("title"), f("status"), f("result"), f("level"), f("occurred_on"), f("agreed_on"),
			f("household_id"), f("visit_id"), f("reported_by"), f("mediators"), f("parties"), f("agreement"), f("outcome"),
			first(), at(false, domain.DisputeResults...), at(true, "closed")}
	case pb.Kind_KIND_NEED:
		cols = "id, household_id, visit_id, category, summary, detail, status, help, resolution, referral_reason, taken_by, raised_ms, met_ms"
		vals = []any{r.GetId(), f("household_id"), f("visit_id"), f("category"), f("summary"), f("detail"), f("status"), f("help"),
			f("resolution"), f("referral_reason"), f("taken_by"), first(), at(false, "resolved")}
	case pb.Kind_KIND_PROJECT:
		cols = "id, title, detail, leader_id, households, planned_on, status, outcome"
		vals = []any{r.GetId(), f("title"), f("detail"), f("leader_id"), strings.Join(domain.SplitList(f("households")), ","),
			f("planned_on"), f("status"), f("outcome")}
	case pb.Kind_KIND_EVENT:
		cols = "id, type, occurred_on, month, subject, detail, service_mode, prev_hash, hash"
		vals = []any{r.GetId(), f("type"), f("occurred_on"), month(f("occurred_on")), f("subject"), f("detail"),
			f("service_mode"), f("prev_hash"), f("hash")}
	}
	vals = append(vals, common...)
	// An upsert, not a REPLACE: the row held is updated, so the update
	// triggers that keep the coverage tables see its old and new values.
	all := strings.Split(cols+", "+commonCols, ", ")
	set := make([]string, 0, len(all)-1)
	for _, c := range all[1:] {
		set = append(set, c+" = excluded."+c)
	}
	q := "INSERT INTO " + table + " (" + cols + ", " + commonCols + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ") + ") ON CONFLICT (id) DO UPDATE SET " + strings.Join(set, ", ")
	if _, err := tx.ExecContext(ctx, q, vals...); err != nil {
		return fmt.Errorf("record %s: %w", r.GetId(), err)
	}
	if err := applyAttachments(ctx, tx, r, village, town, region, held > 0); err != nil {
		return fmt.Errorf("record %s's attachments: %w", r.GetId(), err)
	}
	// History and entries are written whole again: only kinds that have
	// them, and only over a row held before.
	lists := domain.MachineOf(r.GetKind()) != nil
	if !lists {
		return nil
	}
	if held > 0 {
		if _, err := tx.ExecContext(ctx, "DELETE FROM status_history WHERE record_id = ?", r.GetId()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM entries WHERE record_id = ?", r.GetId()); err != nil {
			return err
		}
	}
	for n, h := range hist {
		if _, err := tx.ExecContext(ctx, "INSERT INTO status_history (record_id, n, kind, from_status, to_status, at_ms, author_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
			r.GetId(), n, domain.KindName(r.GetKind()), h.GetFrom(), h.GetTo(), h.GetAtMs(), h.GetAuthorId()); err != nil {
			return err
		}
	}
	counts := map[string]int{}
	for _, e := range r.GetEntries() {
		n := counts[e.GetField()]
		counts[e.GetField()]++
		if _, err := tx.ExecContext(ctx, "INSERT INTO entries (record_id, field, n, text, author_id) VALUES (?, ?, ?, ?, ?)",
			r.GetId(), e.GetField(), n, e.GetText(), e.GetAuthorId()); err != nil {
			return err
		}
	}
	return nil
}

// upsert inserts a row of table keyed by key, or replaces the row held if
// its seq is lower than this one's (the last column).
func upsert(ctx context.Context, tx *txc, table string, key []string, cols []string, vals ...any) error {
	var set []string
	for _, c := range cols {
		set = append(set, c+" = excluded."+c)
	}
	all := append(append([]string{}, key...), cols...)
	q := "INSERT INTO " + table + " (" + strings.Join(all, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(all)), ", ") + ") ON CONFLICT (" + strings.Join(key, ", ") +
		") DO UPDATE SET " + strings.Join(set, ", ") + " WHERE excluded.seq > " + table + ".seq"
	_, err := tx.ExecContext(ctx, q, vals...)
	return err
}

// UnitKindName is a unit kind's name in the model: town, village, grid.
func UnitKindName(k pb.UnitKind) string {
	switch k {
	case pb.UnitKind_UNIT_KIND_TOWN:
		return "town"
	case pb.UnitKind_UNIT_KIND_VILLAGE:
		return "village"
	case pb.UnitKind_UNIT_KIND_GRID:
		return "grid"
	}
	return ""
}

// RoleName is a role's name in the model: member, mediator, secretary, hq.
func RoleName(r pb.Role) string {
	switch r {
	case pb.Role_ROLE_MEMBER:
		return "member"
	case pb.Role_ROLE_MEDIATOR:
		return "mediator"
	case pb.Role_ROLE_SECRETARY:
		return "secretary"
	case pb.Role_ROLE_HQ:
		return "hq"
	}
	return ""
}

func applyUnit(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	u := c.GetUnit()
	unit := u.GetUnit()
	kind := UnitKindName(unit.GetKind())
	switch {
	case unit.GetId() == "":
		return &badChangeError{"unit.unit.id is empty"}
	case kind == "":
		return &badChangeError{fmt.Sprintf("unit %s: unit.kind %v: want town, village or grid", unit.GetId(), unit.GetKind())}
	}
	if err := checkRegion(ctx, tx, "units", "id", "unit", unit.GetId(), region); err != nil {
		return err
	}
	return upsert(ctx, tx, "units", []string{"id"}, []string{"kind", "parent_id", "name", "village_id", "town_id", "region", "seq"},
		unit.GetId(), kind, unit.GetParentId(), unit.GetName(), u.GetVillageId(), u.GetTownId(), region, c.GetSeq())
}

func applyPerson(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	p := c.GetPerson()
	role := RoleName(p.GetRole())
	switch {
	case p.GetId() == "":
		return &badChangeError{"person.id is empty"}
	case role == "":
		return &badChangeError{fmt.Sprintf("person %s: person.role %v: want member, mediator, secretary or hq", p.GetId(), p.GetRole())}
	}
	if err := checkRegion(ctx, tx, "people", "id", "person", p.GetId(), region); err != nil {
		return err
	}
	return upsert(ctx, tx, "people", []string{"id"}, []string{"name", "role", "unit_id", "village_id", "town_id", "disabled_ms", "region", "seq"},
		p.GetId(), p.GetName(), role, p.GetUnitId(), p.GetVillageId(), p.GetTownId(), p.GetDisabledMs(), region, c.GetSeq())
}

func applyLink(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	l := c.GetLink()
	if l.GetHouseholdId() == "" {
		return &badChangeError{"link.household_id is empty"}
	}
	if err := checkRegion(ctx, tx, "links", "household_id", "household link", l.GetHouseholdId(), region); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO link_history (household_id, seq, member_id, previous_member_id, from_ms, by) VALUES (?, ?, ?, ?, ?, ?)",
		l.GetHouseholdId(), c.GetSeq(), l.GetMemberId(), l.GetPreviousMemberId(), c.GetCommittedMs(), l.GetBy()); err != nil {
		return err
	}
	return upsert(ctx, tx, "links", []string{"household_id"}, []string{"member_id", "since_ms", "by", "region", "seq"},
		l.GetHouseholdId(), l.GetMemberId(), c.GetCommittedMs(), l.GetBy(), region, c.GetSeq())
}

func applyDevice(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	d := c.GetDevice()
	if d.GetDeviceId() == "" {
		return &badChangeError{"device.device_id is empty"}
	}
	if err := checkRegion(ctx, tx, "devices", "id", "device", d.GetDeviceId(), region); err != nil {
		return err
	}
	return upsert(ctx, tx, "devices", []string{"id"},
		[]string{"user_id", "name", "app_version", "enrolled_ms", "last_seen_ms", "pending", "revoked_ms", "restored_ms", "restores", "last_seq", "region", "seq"},
		d.GetDeviceId(), d.GetUserId(), d.GetName(), d.GetAppVersion(), d.GetEnrolledMs(), d.GetLastSeenMs(), d.GetPendingCount(),
		d.GetRevokedMs(), d.GetRestoredMs(), d.GetRestores(), d.GetLastSeq(), region, c.GetSeq())
}

func applyRefused(ctx context.Context, tx *txc, c *pb.Change, region string) error {
	e := c.GetRefused()
	if e.GetDeviceId() == "" {
		return &badChangeError{"refused.device_id is empty"}
	}
	if err := checkRegion(ctx, tx, "devices", "id", "device", e.GetDeviceId(), region); err != nil {
		return err
	}
	return upsert(ctx, tx, "refused_events", []string{"device_id", "device_seq"},
		[]string{"user_id", "record_id", "prev_hash", "hash", "code", "reason", "region", "seq"},
		e.GetDeviceId(), e.GetDeviceSeq(), e.GetUserId(), e.GetRecordId(), e.GetPrevHash(), e.GetHash(), e.GetCode(), e.GetReason(), region, c.GetSeq())
}

// txc is a transaction that prepares each statement once: a batch of
// changes runs the same few statements hundreds of times.
type txc struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func newTxc(tx *sql.Tx) *txc { return &txc{tx: tx, stmts: map[string]*sql.Stmt{}} }

func (t *txc) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if s, ok := t.stmts[q]; ok {
		return s, nil
	}
	s, err := t.tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	t.stmts[q] = s
	return s, nil
}

// ExecContext runs q with args.
func (t *txc) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// QueryRowContext runs q with args; errors come from Scan.
func (t *txc) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	s, err := t.stmt(ctx, q)
	if err != nil {
		return t.tx.QueryRowContext(ctx, q, args...) // the same error, from Scan
	}
	return s.QueryRowContext(ctx, args...)
}
