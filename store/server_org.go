package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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

// PutUnit upserts a unit with the village and town it lies in.
func (t *Tx) PutUnit(u *pb.Unit, villageID, townID string) error {
	_, err := t.Exec(`INSERT INTO units (id, kind, parent_id, name, village_id, town_id) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent_id = excluded.parent_id, name = excluded.name,
		village_id = excluded.village_id, town_id = excluded.town_id`,
		u.GetId(), int(u.GetKind()), u.GetParentId(), u.GetName(), villageID, townID)
	return err
}

// PutUser upserts a user. If an existing user's role or unit changes, so
// may their scope: their devices are poked to sync.
func (t *Tx) PutUser(u *pb.User, villageID, townID string) error {
	var role int
	var oldVillage, oldTown string
	err := t.QueryRow("SELECT role, village_id, town_id FROM users WHERE id = ?", u.GetId()).Scan(&role, &oldVillage, &oldTown)
	moved := err == nil && (pb.Role(role) != u.GetRole() || oldVillage != villageID || oldTown != townID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	_, err = t.Exec(`INSERT INTO users (id, name, role, unit_id, phone, village_id, town_id) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, unit_id = excluded.unit_id,
		phone = excluded.phone, village_id = excluded.village_id, town_id = excluded.town_id`,
		u.GetId(), u.GetName(), int(u.GetRole()), u.GetUnitId(), u.GetPhone(), villageID, townID)
	if err == nil && moved {
		t.PokeBuckets(domain.UserBucket(u.GetId()))
	}
	return err
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
// to before ("" if none).
func (t *Tx) Link(householdID, memberID string) (string, error) {
	var prev string
	err := t.QueryRow("SELECT member_id FROM links WHERE household_id = ?", householdID).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	_, err = t.Exec(`INSERT INTO links (household_id, member_id) VALUES (?, ?)
		ON CONFLICT (household_id) DO UPDATE SET member_id = excluded.member_id`, householdID, memberID)
	if err == nil && prev != memberID {
		// Wake both members' devices: one gains the household, one loses it.
		t.PokeBuckets(domain.UserBucket(memberID))
		if prev != "" {
			t.PokeBuckets(domain.UserBucket(prev))
		}
	}
	return prev, err
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

// LinkedHouseholds lists the households linked to a member.
func (s *Server) LinkedHouseholds(ctx context.Context, memberID string) ([]string, error) {
	return strings1(ctx, s.r, "SELECT household_id FROM links WHERE member_id = ? ORDER BY household_id", memberID)
}

// MediatedDisputes lists the disputes a user mediates.
func (s *Server) MediatedDisputes(ctx context.Context, userID string) ([]string, error) {
	return strings1(ctx, s.r, "SELECT dispute_id FROM dispute_mediators WHERE user_id = ? ORDER BY dispute_id", userID)
}

// BucketRow is one record of a pull: its change number in the bucket and
// its encoded state. Gone says the record left the bucket at Seq.
type BucketRow struct {
	Seq  uint64
	Body []byte
	Gone bool
}

// Pull returns up to limit records of bucket changed after seq, in change
// order, each once, as they are now.
func (s *Server) Pull(ctx context.Context, bucket string, after uint64, limit int) ([]BucketRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT rb.seq, r.body, rb.gone FROM record_buckets rb JOIN records r ON r.id = rb.record_id
		WHERE rb.bucket = ? AND rb.seq > ? ORDER BY rb.seq LIMIT ?`, bucket, after, limit)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", bucket, err)
	}
	defer rows.Close()
	var out []BucketRow
	for rows.Next() {
		var r BucketRow
		if err := rows.Scan(&r.Seq, &r.Body, &r.Gone); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// BucketHead returns the highest change number in a bucket (0 if empty).
func (s *Server) BucketHead(ctx context.Context, bucket string) (uint64, error) {
	var seq sql.NullInt64
	err := s.r.QueryRowContext(ctx, "SELECT MAX(seq) FROM record_buckets WHERE bucket = ?", bucket).Scan(&seq)
	return uint64(seq.Int64), err
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
