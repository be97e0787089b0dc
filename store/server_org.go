package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// queryer is what both a transaction and the reader pool can do.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// UnitInfo is a unit with the village and town it lies in.
type UnitInfo struct {
	Unit      *pb.Unit
	VillageID string // empty for a town
	TownID    string
}

func unit(ctx context.Context, q queryer, id string) (UnitInfo, error) {
	u := UnitInfo{Unit: &pb.Unit{Id: id}}
	var kind int
	err := q.QueryRowContext(ctx, "SELECT kind, parent_id, name, village_id, town_id FROM units WHERE id = ?", id).
		Scan(&kind, &u.Unit.ParentId, &u.Unit.Name, &u.VillageID, &u.TownID)
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrNotFound
	}
	u.Unit.Kind = pb.UnitKind(kind)
	return u, err
}

// UserInfo is a user with the village and town they work in.
type UserInfo struct {
	User      *pb.User
	VillageID string
	TownID    string
}

func user(ctx context.Context, q queryer, id string) (UserInfo, error) {
	u := UserInfo{User: &pb.User{Id: id}}
	var role int
	err := q.QueryRowContext(ctx, "SELECT name, role, unit_id, phone, village_id, town_id FROM users WHERE id = ?", id).
		Scan(&u.User.Name, &role, &u.User.UnitId, &u.User.Phone, &u.VillageID, &u.TownID)
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrNotFound
	}
	u.User.Role = pb.Role(role)
	return u, err
}

// Unit reads a unit in the transaction.
func (t *Tx) Unit(id string) (UnitInfo, error) { return unit(t.ctx, txq{t}, id) }

// User reads a user in the transaction.
func (t *Tx) User(id string) (UserInfo, error) { return user(t.ctx, txq{t}, id) }

// User reads a user.
func (s *Server) User(ctx context.Context, id string) (UserInfo, error) { return user(ctx, s.r, id) }

// PutUnit upserts a unit with the village and town it lies in; a new unit
// or one whose kind, parent, name, village or town changed goes on the
// changelog (Change.unit).
func (t *Tx) PutUnit(u *pb.Unit, villageID, townID string) error {
	old, err := t.Unit(u.GetId())
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	same := err == nil && old.Unit.GetKind() == u.GetKind() && old.Unit.GetParentId() == u.GetParentId() &&
		old.Unit.GetName() == u.GetName() && old.VillageID == villageID && old.TownID == townID
	if same {
		return nil
	}
	if _, err := t.Exec(`INSERT INTO units (id, kind, parent_id, name, village_id, town_id) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent_id = excluded.parent_id, name = excluded.name,
		village_id = excluded.village_id, town_id = excluded.town_id`,
		u.GetId(), int(u.GetKind()), u.GetParentId(), u.GetName(), villageID, townID); err != nil {
		return err
	}
	return t.unitChanged(u.GetId())
}

// PutUser upserts a user. If an existing user's role or unit changes, so
// may their scope: their devices are poked to sync. A new user, or one
// whose name, role, unit, village or town changed, goes on the changelog
// (Change.person; the phone is not on it).
func (t *Tx) PutUser(u *pb.User, villageID, townID string) error {
	var role int
	var oldName, oldUnit, oldPhone, oldVillage, oldTown string
	err := t.QueryRow("SELECT name, role, unit_id, phone, village_id, town_id FROM users WHERE id = ?", u.GetId()).
		Scan(&oldName, &role, &oldUnit, &oldPhone, &oldVillage, &oldTown)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	exists := err == nil
	moved := exists && (pb.Role(role) != u.GetRole() || oldVillage != villageID || oldTown != townID)
	seen := !exists || moved || oldName != u.GetName() || oldUnit != u.GetUnitId()
	if exists && !seen && oldPhone == u.GetPhone() {
		return nil // as stored
	}
	_, err = t.Exec(`INSERT INTO users (id, name, role, unit_id, phone, village_id, town_id) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, unit_id = excluded.unit_id,
		phone = excluded.phone, village_id = excluded.village_id, town_id = excluded.town_id`,
		u.GetId(), u.GetName(), int(u.GetRole()), u.GetUnitId(), u.GetPhone(), villageID, townID)
	if err != nil {
		return err
	}
	if moved {
		t.PokeBuckets(domain.UserBucket(u.GetId()))
	}
	if seen {
		return t.personChanged(u.GetId())
	}
	return nil
}

// PokeBuckets marks buckets as changed by this transaction without a record
// changing in them, so that after the commit the Watch streams listening to
// them are poked (OnCommit). The org uses it to wake the devices whose
// scope it changed: a user's own bucket u:<user> is in every device scope
// of that user, so poking it makes their devices sync and rescope.
func (t *Tx) PokeBuckets(buckets ...string) {
	t.changed = append(t.changed, buckets...)
}

// Link links a household to a member and returns the member it was linked
// to before ("" if none). A changed link goes on the changelog
// (Change.link) as made by who; by names them in it: "admin:<name>" or
// "secretary:<user id>".
func (t *Tx) Link(householdID, memberID string, who ChangeInfo, by string) (string, error) {
	var prev string
	err := t.QueryRow("SELECT member_id FROM links WHERE household_id = ?", householdID).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	if err == nil && prev == memberID {
		return prev, nil
	}
	if _, err = t.Exec(`INSERT INTO links (household_id, member_id) VALUES (?, ?)
		ON CONFLICT (household_id) DO UPDATE SET member_id = excluded.member_id`, householdID, memberID); err != nil {
		return "", err
	}
	t.relinked = true
	// Wake both members' devices: one gains the household, one loses it.
	t.PokeBuckets(domain.UserBucket(memberID))
	if prev != "" {
		t.PokeBuckets(domain.UserBucket(prev))
	}
	return prev, t.linkChanged(householdID, memberID, prev, who, by)
}

// LinkedMember returns the member a household is linked to, or "".
func (t *Tx) LinkedMember(householdID string) (string, error) {
	var m string
	err := t.QueryRow("SELECT member_id FROM links WHERE household_id = ?", householdID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m, err
}

// Household says where a household lies and which member it is linked to
// ("" for none), in one read and without decoding its body (a visit's
// create needs only that); ErrNotFound if there is no household id.
func (t *Tx) Household(id string) (RecordMeta, string, error) {
	var m RecordMeta
	var member sql.NullString
	err := t.QueryRow(`SELECT r.village_id, r.town_id, l.member_id FROM records r
		LEFT JOIN links l ON l.household_id = r.id WHERE r.id = ? AND r.kind = ?`, id, int(pb.Kind_KIND_HOUSEHOLD)).
		Scan(&m.VillageID, &m.TownID, &member)
	if errors.Is(err, sql.ErrNoRows) {
		return m, "", ErrNotFound
	}
	return m, member.String, err
}

// householdVisits reads the visits filed in a household's bucket (a visit
// never leaves it: its household_id is fixed), by the bucket's primary key.
const householdVisits = `SELECT r.body FROM record_buckets rb JOIN records r ON r.id = rb.record_id
	WHERE rb.bucket = ? AND rb.gone = 0 AND r.kind = ? ORDER BY rb.record_id`

// HouseholdVisits reads every visit to a household as stored, by record id.
// A household that moves to another village or town takes its visits along
// (a visit lies where its household does): the caller writes each again
// with its new buckets.
func (t *Tx) HouseholdVisits(householdID string) ([]*pb.Record, error) {
	rows, err := txq{t}.QueryContext(t.ctx, householdVisits, domain.HouseholdBucket(householdID), int(pb.Kind_KIND_VISIT))
	if err != nil {
		return nil, fmt.Errorf("read visits of %s: %w", householdID, err)
	}
	defer rows.Close()
	var out []*pb.Record
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("read visits of %s: %w", householdID, err)
		}
		r := &pb.Record{}
		if err := proto.Unmarshal(body, r); err != nil {
			return nil, fmt.Errorf("decode a visit of %s: %w", householdID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read visits of %s: %w", householdID, err)
	}
	return out, nil
}

// villageRecords reads the records filed in a village: the live rows of
// its bucket, by the bucket's primary key.
const villageRecords = `SELECT r.body, r.village_id, r.town_id FROM record_buckets rb JOIN records r ON r.id = rb.record_id
	WHERE rb.bucket = ? AND rb.gone = 0 ORDER BY rb.record_id`

// VillageRecords reads every record filed in a village as stored, with the
// village and town the server files each under, by record id. When a unit
// moves (a grid to another village, a village to another town) the caller
// writes again those that now lie elsewhere.
func (t *Tx) VillageRecords(villageID string) ([]*pb.Record, []RecordMeta, error) {
	rows, err := txq{t}.QueryContext(t.ctx, villageRecords, domain.VillageBucket(villageID))
	if err != nil {
		return nil, nil, fmt.Errorf("read records of village %s: %w", villageID, err)
	}
	defer rows.Close()
	var recs []*pb.Record
	var metas []RecordMeta
	for rows.Next() {
		var body []byte
		var m RecordMeta
		if err := rows.Scan(&body, &m.VillageID, &m.TownID); err != nil {
			return nil, nil, fmt.Errorf("read records of village %s: %w", villageID, err)
		}
		r := &pb.Record{}
		if err := proto.Unmarshal(body, r); err != nil {
			return nil, nil, fmt.Errorf("decode a record of village %s: %w", villageID, err)
		}
		recs, metas = append(recs, r), append(metas, m)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read records of village %s: %w", villageID, err)
	}
	return recs, metas, nil
}

// SetGridsTown files a village's grids under townID (the village moved to
// that town) and returns the ids of the grids it changed, each of which
// goes on the changelog.
func (t *Tx) SetGridsTown(villageID, townID string) ([]string, error) {
	ids, err := strings1(t.ctx, txq{t}, "UPDATE units SET town_id = ? WHERE village_id = ? AND kind = ? AND town_id != ? RETURNING id",
		townID, villageID, int(pb.UnitKind_UNIT_KIND_GRID), townID)
	if err != nil {
		return nil, fmt.Errorf("move grids of village %s to town %s: %w", villageID, townID, err)
	}
	for _, id := range ids {
		if err := t.unitChanged(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// RehomeUsers sets the village and town of the users who work in the
// given units from those units as they now are (after a unit moved), and
// pokes the devices of each user it changed, so that they sync and learn
// where they now work; each goes on the changelog. It returns how many
// users it changed.
func (t *Tx) RehomeUsers(unitIDs []string) (int, error) {
	hq := int(pb.Role_ROLE_HQ) // works nowhere: its unit, if any, says nothing
	n := 0
	for _, unitID := range unitIDs {
		u, err := t.Unit(unitID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		ids, err := strings1(t.ctx, txq{t}, `UPDATE users SET village_id = ?, town_id = ?
			WHERE unit_id = ? AND role != ? AND (village_id != ? OR town_id != ?) RETURNING id`,
			u.VillageID, u.TownID, unitID, hq, u.VillageID, u.TownID)
		if err != nil {
			return n, fmt.Errorf("move users of unit %s: %w", unitID, err)
		}
		for _, id := range ids {
			t.PokeBuckets(domain.UserBucket(id))
			if err := t.personChanged(id); err != nil {
				return n, err
			}
		}
		n += len(ids)
	}
	return n, nil
}

// SetMediators records who mediates a dispute, replacing the old list.
// The devices of mediators added or removed are poked, so that they sync
// and gain or purge the case.
func (t *Tx) SetMediators(disputeID string, userIDs []string) error {
	old, err := strings1(t.ctx, txq{t}, "SELECT user_id FROM dispute_mediators WHERE dispute_id = ?", disputeID)
	if err != nil {
		return err
	}
	if _, err := t.Exec("DELETE FROM dispute_mediators WHERE dispute_id = ?", disputeID); err != nil {
		return err
	}
	now := map[string]bool{}
	for _, u := range userIDs {
		now[u] = true
		if _, err := t.Exec("INSERT OR IGNORE INTO dispute_mediators (user_id, dispute_id) VALUES (?, ?)", u, disputeID); err != nil {
			return err
		}
	}
	was := map[string]bool{}
	for _, u := range old {
		was[u] = true
		if !now[u] {
			t.PokeBuckets(domain.UserBucket(u))
		}
	}
	for u := range now {
		if !was[u] {
			t.PokeBuckets(domain.UserBucket(u))
		}
	}
	return nil
}

func strings1(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const linkedQuery = "SELECT household_id FROM links WHERE member_id = ? ORDER BY household_id"

// LinkedHouseholds lists the households linked to a member (remembered:
// links.go). The caller must not modify the list.
func (s *Server) LinkedHouseholds(ctx context.Context, memberID string) ([]string, error) {
	hs, gen, ok := s.links.get(memberID)
	if ok && !fromDisk(ctx) {
		return hs, nil
	}
	hs, err := strings1(ctx, s.r, linkedQuery, memberID)
	if err == nil {
		s.links.put(memberID, gen, hs)
	}
	return hs, err
}

// MediatedDisputes lists the disputes a user mediates.
func (s *Server) MediatedDisputes(ctx context.Context, userID string) ([]string, error) {
	return strings1(ctx, s.r, "SELECT dispute_id FROM dispute_mediators WHERE user_id = ? ORDER BY dispute_id", userID)
}

// BucketRow is one record of a pull: its change number in the bucket, its
// id and its encoded state. Gone says the record left the bucket at Seq.
type BucketRow struct {
	Seq      uint64
	RecordID string
	Body     []byte
	Gone     bool
}

// Cursor is where a reader is in one bucket: it has every change up to
// After.
type Cursor struct {
	Bucket string
	After  uint64
}

// pullArm reads one bucket's rows after a cursor; pullAll is the "all"
// bucket, which is the records table in version order (PutRecord files no
// rows for it).
const (
	pullArm = `SELECT * FROM (SELECT rb.seq, rb.record_id, rb.gone, r.body FROM record_buckets rb
		JOIN records r ON r.id = rb.record_id WHERE rb.bucket = ? AND rb.seq > ? ORDER BY rb.seq LIMIT ?)`
	pullAll = `SELECT version, id, 0, body FROM records WHERE version > ? ORDER BY version LIMIT ?`
)

// pullChunk bounds how many buckets one pull statement reads: one prepared
// statement per count up to it.
const pullChunk = 16

var pullStatements sync.Map // int -> string

func pullStatement(n int) string {
	if q, ok := pullStatements.Load(n); ok {
		return q.(string)
	}
	arms := make([]string, n)
	for i := range arms {
		arms[i] = strings.Replace(pullArm, "SELECT *", fmt.Sprintf("SELECT %d,", i)+" *", 1)
	}
	q := strings.Join(arms, "\nUNION ALL\n")
	pullStatements.Store(n, q)
	return q
}

// PullBuckets returns, for each cursor, up to limit rows of its bucket
// changed after it, in change order, as they are now. It reads up to
// pullChunk buckets per statement: a member's sync reads its 6-11 buckets
// in one query instead of one each (syncbench's storm profile: the
// per-bucket queries were a fifth of the server's CPU).
func (s *Server) PullBuckets(ctx context.Context, cursors []Cursor, limit int) ([][]BucketRow, error) {
	out := make([][]BucketRow, len(cursors))
	var idx []int // the cursors read by buckets' rows, by position
	for i, c := range cursors {
		if !s.heads.after(c.Bucket, c.After) && !fromDisk(ctx) {
			continue // nothing after the cursor (heads.go)
		}
		if c.Bucket != domain.AllBucket {
			idx = append(idx, i)
			continue
		}
		rows, err := s.r.QueryContext(ctx, pullAll, c.After, limit)
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", c.Bucket, err)
		}
		if out[i], err = scanPull(rows, nil); err != nil {
			return nil, fmt.Errorf("pull %s: %w", c.Bucket, err)
		}
	}
	for len(idx) > 0 {
		chunk := idx[:min(len(idx), pullChunk)]
		idx = idx[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		for _, i := range chunk {
			args = append(args, cursors[i].Bucket, cursors[i].After, limit)
		}
		rows, err := s.r.QueryContext(ctx, pullStatement(len(chunk)), args...)
		if err != nil {
			return nil, fmt.Errorf("pull %d buckets: %w", len(chunk), err)
		}
		var arm []int
		got, err := scanPull(rows, &arm)
		if err != nil {
			return nil, fmt.Errorf("pull %d buckets: %w", len(chunk), err)
		}
		for k, row := range got {
			i := chunk[arm[k]]
			out[i] = append(out[i], row)
		}
	}
	for _, rows := range out {
		// UNION ALL keeps each arm's order in SQLite; do not depend on it.
		slices.SortFunc(rows, func(a, b BucketRow) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return out, nil
}

// scanPull reads pull rows; with arm set, each row starts with its arm's
// number, appended to *arm.
func scanPull(rows *sql.Rows, arm *[]int) ([]BucketRow, error) {
	defer rows.Close()
	var out []BucketRow
	for rows.Next() {
		var r BucketRow
		var err error
		if arm != nil {
			var a int
			err = rows.Scan(&a, &r.Seq, &r.RecordID, &r.Gone, &r.Body)
			*arm = append(*arm, a)
		} else {
			err = rows.Scan(&r.Seq, &r.RecordID, &r.Gone, &r.Body)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Pull returns up to limit records of bucket changed after seq, in change
// order, as they are now.
func (s *Server) Pull(ctx context.Context, bucket string, after uint64, limit int) ([]BucketRow, error) {
	rows, err := s.PullBuckets(ctx, []Cursor{{Bucket: bucket, After: after}}, limit)
	if err != nil {
		return nil, err
	}
	return rows[0], nil
}

// ChangeRow is one row of the changelog.
type ChangeRow struct {
	Seq     uint64
	Subject string
	Body    []byte // fieldsync.v1.Change
}

// ChangesAfter returns up to limit changes after seq, in order.
func (s *Server) ChangesAfter(ctx context.Context, after uint64, limit int) ([]ChangeRow, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT seq, subject, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var out []ChangeRow
	for rows.Next() {
		var c ChangeRow
		if err := rows.Scan(&c.Seq, &c.Subject, &c.Body); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastSeq returns the highest committed change number.
func (s *Server) LastSeq(ctx context.Context) (uint64, error) {
	var seq sql.NullInt64
	err := s.r.QueryRowContext(ctx, "SELECT MAX(seq) FROM changes").Scan(&seq)
	return uint64(seq.Int64), err
}

// Record reads a record's current state; ErrNotFound if there is none.
func (s *Server) Record(ctx context.Context, id string) (*pb.Record, error) {
	var body []byte
	err := s.r.QueryRowContext(ctx, "SELECT body FROM records WHERE id = ?", id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r := &pb.Record{}
	return r, proto.Unmarshal(body, r)
}
