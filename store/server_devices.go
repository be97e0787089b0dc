package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// HashSecret is how credentials and enrollment codes are kept: only their
// SHA-256. They are 160+ random bits, so a plain hash suffices (no salt or
// slow hash is needed against guessing).
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// DeviceAuth is what the server knows of a credential's device.
type DeviceAuth struct {
	DeviceID  string
	UserID    string
	RevokedMs int64
}

// DeviceByToken finds the device whose credential hashes to tokenHash.
func (s *Server) DeviceByToken(ctx context.Context, tokenHash string) (DeviceAuth, error) {
	var d DeviceAuth
	err := s.r.QueryRowContext(ctx, "SELECT id, user_id, revoked_ms FROM devices WHERE token_hash = ?", tokenHash).
		Scan(&d.DeviceID, &d.UserID, &d.RevokedMs)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	return d, err
}

// PutEnrollCode stores a new enrollment code's hash.
func (t *Tx) PutEnrollCode(codeHash, userID string, expiresMs int64) error {
	_, err := t.Exec("INSERT INTO enroll_codes (code_hash, user_id, expires_ms, created_ms) VALUES (?, ?, ?, ?)", codeHash, userID, expiresMs, t.now.UnixMilli())
	return err
}

// Enrollment code states UseEnrollCode reports.
var (
	// ErrCodeUsed is returned for a code that enrolled a device already.
	ErrCodeUsed = errors.New("enrollment code already used")
	// ErrCodeExpired is returned for a code past its expiry.
	ErrCodeExpired = errors.New("enrollment code expired")
)

// UseEnrollCode marks a code used and returns its user. ErrNotFound,
// ErrCodeUsed, ErrCodeCancelled or ErrCodeExpired say why a code does not
// work.
func (t *Tx) UseEnrollCode(codeHash string, nowMs int64) (string, error) {
	var userID string
	var expires, used, cancelled int64
	err := t.QueryRow("SELECT user_id, expires_ms, used_ms, cancelled_ms FROM enroll_codes WHERE code_hash = ?", codeHash).Scan(&userID, &expires, &used, &cancelled)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrNotFound
	case err != nil:
		return "", err
	case used != 0:
		return "", ErrCodeUsed
	case cancelled != 0:
		return "", ErrCodeCancelled
	case nowMs > expires:
		return "", ErrCodeExpired
	}
	_, err = t.Exec("UPDATE enroll_codes SET used_ms = ? WHERE code_hash = ?", nowMs, codeHash)
	return userID, err
}

// PutDevice stores a newly enrolled device, and its health on the
// changelog (Change.device, made by the device).
func (t *Tx) PutDevice(d *pb.Device, tokenHash string) error {
	if _, err := t.Exec(`INSERT INTO devices (id, user_id, token_hash, name, app_version, enrolled_ms) VALUES (?, ?, ?, ?, ?, ?)`,
		d.GetId(), d.GetUserId(), tokenHash, d.GetName(), d.GetAppVersion(), d.GetEnrolledMs()); err != nil {
		return err
	}
	return t.deviceChanged(d.GetId(), ChangeInfo{})
}

// DeviceState is a device's position in its mutation numbering.
type DeviceState struct {
	LastSeq   uint64
	RevokedMs int64
	// ReplicaID is the copy of the device database that syncs ("" until a
	// device that sends one synced); OfferedReplicaID the id offered to a
	// copy found restored, not yet used by it.
	ReplicaID, OfferedReplicaID string
}

// DeviceState reads a device's last applied mutation number and replica.
func (t *Tx) DeviceState(deviceID string) (DeviceState, error) {
	var d DeviceState
	err := t.QueryRow("SELECT last_seq, revoked_ms, replica_id, offered_replica_id FROM devices WHERE id = ?", deviceID).
		Scan(&d.LastSeq, &d.RevokedMs, &d.ReplicaID, &d.OfferedReplicaID)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	return d, err
}

// TouchDevice records a device's sync: its last applied mutation number, its
// pending count and app version, and when it was seen. Its health goes on
// the changelog when its app version or pending count changed, or its
// last health there is an hour old (healthEvery).
func (t *Tx) TouchDevice(deviceID string, lastSeq uint64, pending uint32, appVersion string) error {
	var oldVersion string
	var oldPending uint32
	var healthMs int64
	err := t.QueryRow("SELECT app_version, pending, health_ms FROM devices WHERE id = ?", deviceID).Scan(&oldVersion, &oldPending, &healthMs)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // as the UPDATE below would: no such device
	}
	if err != nil {
		return err
	}
	if _, err := t.Exec(`UPDATE devices SET last_seq = ?, pending = ?, app_version = CASE WHEN ? = '' THEN app_version ELSE ? END,
		last_seen_ms = ? WHERE id = ?`, lastSeq, pending, appVersion, appVersion, t.now.UnixMilli(), deviceID); err != nil {
		return err
	}
	if (appVersion != "" && appVersion != oldVersion) || pending != oldPending || t.now.UnixMilli()-healthMs >= healthEvery.Milliseconds() {
		return t.deviceChanged(deviceID, ChangeInfo{})
	}
	return nil
}

// SetReplica records the replica id a device's database syncs with.
func (t *Tx) SetReplica(deviceID, replicaID string) error {
	if _, err := t.Exec("UPDATE devices SET replica_id = ? WHERE id = ?", replicaID, deviceID); err != nil {
		return err
	}
	return t.knowReplica(deviceID, replicaID)
}

// knowReplica adds a replica id to the ids the database knew for a device.
func (t *Tx) knowReplica(deviceID, replicaID string) error {
	_, err := t.Exec("INSERT OR IGNORE INTO replica_ids (device_id, replica_id) VALUES (?, ?)", deviceID, replicaID)
	return err
}

// KnownReplica reports whether a device synced with, or was offered, a
// replica id in this database.
func (t *Tx) KnownReplica(deviceID, replicaID string) (bool, error) {
	var n int
	err := t.QueryRow("SELECT COUNT(*) FROM replica_ids WHERE device_id = ? AND replica_id = ?", deviceID, replicaID).Scan(&n)
	return n > 0, err
}

// OfferReplica offers a new replica id to a copy of a device database
// whose numbering went back. The device's id does not change yet: a late
// copy of an old request from the device in use gets the offer too, and
// must not take its place.
func (t *Tx) OfferReplica(deviceID, replicaID string) error {
	if _, err := t.Exec("UPDATE devices SET offered_replica_id = ? WHERE id = ?", replicaID, deviceID); err != nil {
		return err
	}
	return t.knowReplica(deviceID, replicaID)
}

// MarkRestored makes the offered replica id the device's, once the copy it
// was offered to syncs with it, and records that the device's numbering
// went back (its database was restored from an older copy): when, and one
// more time. Its health goes on the changelog.
func (t *Tx) MarkRestored(deviceID, replicaID string) error {
	res, err := t.Exec(`UPDATE devices SET restored_ms = ?, restores = restores + 1, replica_id = ?, offered_replica_id = ''
		WHERE id = ?`, t.now.UnixMilli(), replicaID, deviceID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	return t.deviceChanged(deviceID, ChangeInfo{})
}

// MutationHash is what the server keeps of a mutation's content to tell a
// retry from other content under the same number: the first 16 bytes of
// the SHA-256 of its deterministic encoding (its number included).
func MutationHash(m *pb.Mutation) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode mutation %d: %w", m.GetSeq(), err)
	}
	h := sha256.Sum256(b)
	return h[:16], nil
}

// RevokeDevice marks a device revoked, an administrator's act on the
// changelog (Change.device); ErrNotFound if there is none.
func (t *Tx) RevokeDevice(deviceID string) error {
	res, err := t.Exec("UPDATE devices SET revoked_ms = ? WHERE id = ? AND revoked_ms = 0", t.now.UnixMilli(), deviceID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err := t.DeviceState(deviceID)
		return err // revoked already, or ErrNotFound
	}
	return t.deviceChanged(deviceID, AdminChange)
}

// PutResult keeps the result of a device's mutation with its content hash
// (MutationHash), so that a retry gets the same answer and other content
// under the same number is noticed; for an event, link is its place in its
// device's chain (see RefusedLinks and ChainHead), else the zero link. A
// refused event's link goes on the changelog (Change.refused), as
// RefusedLinks would return it.
func (t *Tx) PutResult(deviceID string, r *pb.MutationResult, link domain.ChainLink, hash []byte) error {
	_, err := t.Exec(`INSERT OR REPLACE INTO mutation_results (device_id, seq, record_id, status, code, field, reason, chain_prev, chain_hash, hash, answered_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		deviceID, r.GetSeq(), r.GetRecordId(), int(r.GetStatus()), r.GetCode(), r.GetField(), r.GetReason(), link.Prev, link.Hash, hash, t.now.UnixMilli())
	if err != nil || link.Hash == "" || r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED {
		return err
	}
	return t.refusedChanged(deviceID, r, link)
}

// RefusedLinks returns, by device, the chain links of the events the
// server refused, in the device's order: with them a device's stored
// events verify as a chain (domain.VerifyChain) although the refused ones
// are not stored.
func (s *Server) RefusedLinks(ctx context.Context) (map[string][]domain.ChainLink, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT device_id, chain_prev, chain_hash FROM mutation_results WHERE chain_hash != '' AND status = ? ORDER BY device_id, seq",
		int(pb.MutationStatus_MUTATION_STATUS_REJECTED))
	if err != nil {
		return nil, fmt.Errorf("read refused events: %w", err)
	}
	defer rows.Close()
	out := map[string][]domain.ChainLink{}
	for rows.Next() {
		var dev string
		var l domain.ChainLink
		if err := rows.Scan(&dev, &l.Prev, &l.Hash); err != nil {
			return nil, fmt.Errorf("read refused events: %w", err)
		}
		out[dev] = append(out[dev], l)
	}
	return out, rows.Err()
}

// Result returns the kept result of a device's mutation number, and
// whether the content hash kept with it matches hash: false means the
// number was answered for other content, and the result must not be given
// for this one. A number answered before hashes were kept (no row, or a
// row without a hash) matches, and with no row it was applied plainly.
func (t *Tx) Result(deviceID string, seq uint64, recordID string, hash []byte) (*pb.MutationResult, bool, error) {
	r := &pb.MutationResult{Seq: seq, RecordId: recordID}
	var status int
	var kept []byte
	err := t.QueryRow("SELECT record_id, status, code, field, reason, hash FROM mutation_results WHERE device_id = ? AND seq = ?", deviceID, seq).
		Scan(&r.RecordId, &status, &r.Code, &r.Field, &r.Reason, &kept)
	if errors.Is(err, sql.ErrNoRows) {
		// A number whose result the retention pass deleted cannot be told
		// from other content under it: answered as other content, the
		// device renumbers and sends it again rather than lose it.
		if compacted, err := t.resultCompacted(deviceID, seq); err != nil || compacted {
			return nil, false, err
		}
		r.Status = pb.MutationStatus_MUTATION_STATUS_APPLIED
		return r, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	r.Status = pb.MutationStatus(status)
	return r, len(kept) == 0 || bytes.Equal(kept, hash), nil
}

// ListDevices returns up to limit devices with ids after afterID, optionally
// of one user.
func (s *Server) ListDevices(ctx context.Context, userID, afterID string, limit int) ([]*pb.Device, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, user_id, name, app_version, enrolled_ms, last_seen_ms, last_seq, pending, revoked_ms,
		restored_ms, restores FROM devices WHERE id > ? AND (? = '' OR user_id = ?) ORDER BY id LIMIT ?`, afterID, userID, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []*pb.Device
	for rows.Next() {
		d := &pb.Device{}
		if err := rows.Scan(&d.Id, &d.UserId, &d.Name, &d.AppVersion, &d.EnrolledMs, &d.LastSeenMs, &d.LastSeq, &d.PendingCount, &d.RevokedMs, &d.RestoredMs, &d.Restores); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeviceNumbering reads, outside the writer, a device's last answered
// mutation number and its replica id: a call that pushes nothing compares
// them with what the device says before deciding it needs no write.
func (s *Server) DeviceNumbering(ctx context.Context, deviceID string) (lastSeq uint64, replicaID string, err error) {
	err = s.r.QueryRowContext(ctx, "SELECT last_seq, replica_id FROM devices WHERE id = ?", deviceID).Scan(&lastSeq, &replicaID)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	return lastSeq, replicaID, err
}

// ChainHead is the hash of the last event of a device the server answered
// (applied or refused), "" if none: where the device's next event chains.
// Events answered before results were kept for every mutation are not
// seen.
func (t *Tx) ChainHead(deviceID string) (string, error) {
	var h string
	err := t.QueryRow("SELECT chain_hash FROM mutation_results WHERE device_id = ? AND chain_hash != '' ORDER BY seq DESC LIMIT 1", deviceID).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// DeviceRevoked reads from the database whether a device is revoked,
// bypassing every cache.
func (s *Server) DeviceRevoked(ctx context.Context, deviceID string) (bool, error) {
	var revoked int64
	err := s.r.QueryRowContext(ctx, "SELECT revoked_ms FROM devices WHERE id = ?", deviceID).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrNotFound
	}
	return revoked != 0, err
}
