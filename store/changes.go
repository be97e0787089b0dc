package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The changelog carries, besides the records, what HQ needs to build its
// picture from the stream alone: units, people, household links, device
// health and refused events' chain links (Change.unit, person, link,
// device, refused). Each is appended in the transaction that changes it,
// only when something a consumer sees changed, and numbered with the
// records' changes (appendChange): the change numbers stay gap-free, and
// a record's version (its last change number) skips the numbers these
// take.

// AdminChange names an administrator as the author of a change.
var AdminChange = ChangeInfo{DeviceID: "admin", UserID: "admin"}

// healthEvery is how often a device's health is appended when nothing
// else about it changed: at most once an hour, at a sync.
const healthEvery = time.Hour

// orgChangeMigration remembers when each device's health was last
// appended to the changelog (TouchDevice).
const orgChangeMigration = `ALTER TABLE devices ADD COLUMN health_ms INTEGER NOT NULL DEFAULT 0;`

// metaOrgBackfill marks a database whose units, people, links and
// devices are on the changelog (backfillOrg ran, or it was new).
const metaOrgBackfill = "org_changelog_backfilled"

// appendChange appends c to the changelog as the next change: it sets its
// number, id and commit time, and appends record (a record's encoding, as
// stored) as its record field when given, without decoding it again.
func (t *Tx) appendChange(c *pb.Change, subject string, record []byte) (uint64, error) {
	seq := t.nextSeq
	c.Seq, c.ChangeId, c.CommittedMs = seq, fmt.Sprintf("%s-%d", t.instance, seq), t.now.UnixMilli()
	body := make([]byte, 0, proto.Size(c)+len(record)+8)
	body, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(body, c)
	if err != nil {
		return 0, fmt.Errorf("encode change %d: %w", seq, err)
	}
	if record != nil {
		body = protowire.AppendTag(body, changeRecordField, protowire.BytesType)
		body = protowire.AppendBytes(body, record)
	}
	if _, err := t.Exec("INSERT INTO changes (seq, subject, body) VALUES (?, ?, ?)", seq, subject, body); err != nil {
		return 0, fmt.Errorf("append change %d: %w", seq, err)
	}
	t.nextSeq++
	return seq, nil
}

// appendOrg appends a change of one of the org kinds (domain.ChangeUnit...)
// in region (a town id, "" for none).
func (t *Tx) appendOrg(who ChangeInfo, region, kind string, c *pb.Change) error {
	if region == "" {
		region = "none"
	}
	c.DeviceId, c.UserId, c.Region = who.DeviceID, who.UserID, region
	_, err := t.appendChange(c, domain.OrgChangeSubject(region, kind), nil)
	return err
}

// unitChanged appends a unit's state as stored now.
func (t *Tx) unitChanged(id string) error {
	u, err := t.Unit(id)
	if err != nil {
		return fmt.Errorf("read unit %s: %w", id, err)
	}
	return t.appendOrg(AdminChange, u.TownID, domain.ChangeUnit,
		&pb.Change{Unit: &pb.UnitState{Unit: u.Unit, VillageId: u.VillageID, TownId: u.TownID}})
}

// personState reads a person as the changelog carries them.
func (t *Tx) personState(id string) (*pb.PersonState, error) {
	p := &pb.PersonState{Id: id}
	var role int
	err := t.QueryRow("SELECT name, role, unit_id, village_id, town_id, disabled_ms FROM users WHERE id = ?", id).
		Scan(&p.Name, &role, &p.UnitId, &p.VillageId, &p.TownId, &p.DisabledMs)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read person %s: %w", id, err)
	}
	p.Role = pb.Role(role)
	return p, nil
}

// personChanged appends a person's state as stored now.
func (t *Tx) personChanged(id string) error {
	p, err := t.personState(id)
	if err != nil {
		return err
	}
	return t.appendOrg(AdminChange, p.GetTownId(), domain.ChangePerson, &pb.Change{Person: p})
}

// linkChanged appends a household's link as it is now (member "" when
// unlinked), with the member before and who changed it.
func (t *Tx) linkChanged(householdID, member, previous string, who ChangeInfo, by string) error {
	var village, town string
	err := t.QueryRow("SELECT village_id, town_id FROM records WHERE id = ?", householdID).Scan(&village, &town)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read household %s: %w", householdID, err)
	}
	return t.appendOrg(who, town, domain.ChangeLink, &pb.Change{Link: &pb.LinkState{HouseholdId: householdID,
		MemberId: member, PreviousMemberId: previous, VillageId: village, TownId: town, By: by}})
}

// deviceHealth reads a device's health as the changelog carries it, and
// the town of its user (the change's region).
func (t *Tx) deviceHealth(id string) (*pb.DeviceHealth, string, error) {
	d := &pb.DeviceHealth{DeviceId: id}
	var town sql.NullString
	err := t.QueryRow(`SELECT d.user_id, d.name, d.app_version, d.enrolled_ms, d.last_seen_ms, d.pending, d.revoked_ms,
		d.restored_ms, d.restores, d.last_seq, u.town_id FROM devices d LEFT JOIN users u ON u.id = d.user_id WHERE d.id = ?`, id).
		Scan(&d.UserId, &d.Name, &d.AppVersion, &d.EnrolledMs, &d.LastSeenMs, &d.PendingCount, &d.RevokedMs,
			&d.RestoredMs, &d.Restores, &d.LastSeq, &town)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("read device %s: %w", id, err)
	}
	return d, town.String, nil
}

// deviceChanged appends a device's health as stored now, and remembers
// when (TouchDevice's hourly health).
func (t *Tx) deviceChanged(id string, who ChangeInfo) error {
	d, town, err := t.deviceHealth(id)
	if err != nil {
		return err
	}
	if who.DeviceID == "" {
		who = ChangeInfo{DeviceID: id, UserID: d.GetUserId()}
	}
	if _, err := t.Exec("UPDATE devices SET health_ms = ? WHERE id = ?", t.now.UnixMilli(), id); err != nil {
		return fmt.Errorf("mark device %s's health: %w", id, err)
	}
	return t.appendOrg(who, town, domain.ChangeDevice, &pb.Change{Device: d})
}

// refusedChanged appends an event the server refused, with its chain link.
func (t *Tx) refusedChanged(deviceID string, r *pb.MutationResult, link domain.ChainLink) error {
	var user, town sql.NullString
	err := t.QueryRow("SELECT d.user_id, u.town_id FROM devices d LEFT JOIN users u ON u.id = d.user_id WHERE d.id = ?", deviceID).Scan(&user, &town)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read device %s: %w", deviceID, err)
	}
	return t.appendOrg(ChangeInfo{DeviceID: deviceID, UserID: user.String}, town.String, domain.ChangeRefused,
		&pb.Change{Refused: &pb.RefusedEvent{DeviceId: deviceID, UserId: user.String, RecordId: r.GetRecordId(),
			DeviceSeq: r.GetSeq(), PrevHash: link.Prev, Hash: link.Hash, Code: r.GetCode(), Reason: r.GetReason()}})
}

// backfillOrg puts a database's current units, people, links and devices
// on the changelog, once: a database made before the changelog carried
// them gets one change each (by id, admin as the author), a new one
// nothing. It runs at open, before the writer starts.
func (s *Server) backfillOrg(ctx context.Context) error {
	var done string
	err := s.db.W.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaOrgBackfill).Scan(&done)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read meta: %w", err)
	}
	sqlTx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("backfill the org: %w", err)
	}
	defer sqlTx.Rollback()
	var max sql.NullInt64
	if err := sqlTx.QueryRowContext(ctx, "SELECT MAX(seq) FROM changes").Scan(&max); err != nil {
		return fmt.Errorf("backfill the org: read last change: %w", err)
	}
	tx := &Tx{tx: sqlTx, ctx: ctx, instance: s.Instance(), nextSeq: uint64(max.Int64) + 1, now: time.Now(),
		buckets: map[string]bool{}, stmts: &writeStmts{db: s.db.W, stmts: map[string]*sql.Stmt{}, pending: map[string]bool{}}}
	ids := func(q string) ([]string, error) { return strings1(ctx, txq{tx}, q) }
	units, err := ids("SELECT id FROM units ORDER BY kind, id")
	if err != nil {
		return fmt.Errorf("backfill the org: units: %w", err)
	}
	for _, id := range units {
		if err := tx.unitChanged(id); err != nil {
			return fmt.Errorf("backfill the org: %w", err)
		}
	}
	people, err := ids("SELECT id FROM users ORDER BY id")
	if err != nil {
		return fmt.Errorf("backfill the org: people: %w", err)
	}
	for _, id := range people {
		if err := tx.personChanged(id); err != nil {
			return fmt.Errorf("backfill the org: %w", err)
		}
	}
	rows, err := sqlTx.QueryContext(ctx, "SELECT household_id, member_id FROM links ORDER BY household_id")
	if err != nil {
		return fmt.Errorf("backfill the org: links: %w", err)
	}
	var links [][2]string
	for rows.Next() {
		var l [2]string
		if err := rows.Scan(&l[0], &l[1]); err != nil {
			rows.Close()
			return fmt.Errorf("backfill the org: links: %w", err)
		}
		links = append(links, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backfill the org: links: %w", err)
	}
	for _, l := range links {
		if err := tx.linkChanged(l[0], l[1], "", AdminChange, ""); err != nil {
			return fmt.Errorf("backfill the org: %w", err)
		}
	}
	devices, err := ids("SELECT id FROM devices ORDER BY id")
	if err != nil {
		return fmt.Errorf("backfill the org: devices: %w", err)
	}
	for _, id := range devices {
		if err := tx.deviceChanged(id, AdminChange); err != nil {
			return fmt.Errorf("backfill the org: %w", err)
		}
	}
	if _, err := sqlTx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?)", metaOrgBackfill,
		fmt.Sprintf("%d units, %d people, %d links, %d devices", len(units), len(people), len(links), len(devices))); err != nil {
		return fmt.Errorf("backfill the org: mark: %w", err)
	}
	return sqlTx.Commit()
}
