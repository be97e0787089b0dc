package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// quotaMigration keeps what each device pushed on its current quota day
// (server.Quota): mutations answered, their bytes as received, and the
// pushes refused for being over a quota. A device's earlier days go when
// its first push of a new day is counted, so the table holds about one row
// per device. The user index sums one user's devices.
const quotaMigration = `CREATE TABLE quota_usage (
	device_id TEXT NOT NULL, day INTEGER NOT NULL, user_id TEXT NOT NULL,
	records INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, refusals INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (device_id, day)) WITHOUT ROWID;
CREATE INDEX quota_usage_user ON quota_usage (user_id, day);`

// QuotaUsage is what a device (or all of a user's devices) pushed on one
// quota day.
type QuotaUsage struct {
	Records  int64 // mutations answered
	Bytes    int64 // their size as received
	Refusals int64 // pushes refused for a quota
}

// QuotaUsage reads a device's usage of day, whether it has a row for that
// day, and the sum over all of its user's devices (one read of the user's
// few rows).
func (t *Tx) QuotaUsage(deviceID, userID string, day int) (device, user QuotaUsage, found bool, err error) {
	var n int
	err = t.QueryRow(`SELECT COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0), COALESCE(SUM(refusals), 0),
		COALESCE(SUM(records) FILTER (WHERE device_id = ?1), 0), COALESCE(SUM(bytes) FILTER (WHERE device_id = ?1), 0),
		COALESCE(SUM(refusals) FILTER (WHERE device_id = ?1), 0), COUNT(*) FILTER (WHERE device_id = ?1)
		FROM quota_usage WHERE user_id = ?2 AND day = ?3`, deviceID, userID, day).
		Scan(&user.Records, &user.Bytes, &user.Refusals, &device.Records, &device.Bytes, &device.Refusals, &n)
	return device, user, n > 0, err
}

// AddQuotaUsage adds to a device's usage of day. first says the device had
// no row for day (QuotaUsage): its rows of earlier days are dropped.
func (t *Tx) AddQuotaUsage(deviceID, userID string, day int, add QuotaUsage, first bool) error {
	if first {
		if _, err := t.Exec("DELETE FROM quota_usage WHERE device_id = ? AND day < ?", deviceID, day); err != nil {
			return err
		}
	}
	_, err := t.Exec(`INSERT INTO quota_usage (device_id, day, user_id, records, bytes, refusals) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (device_id, day) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes,
		refusals = refusals + excluded.refusals`, deviceID, day, userID, add.Records, add.Bytes, add.Refusals)
	return err
}

// QuotaUsageOn reads the usage of day of each listed device that has any
// (for the device list).
func (s *Server) QuotaUsageOn(ctx context.Context, day int, deviceIDs []string) (map[string]QuotaUsage, error) {
	out := make(map[string]QuotaUsage, len(deviceIDs))
	if len(deviceIDs) == 0 {
		return out, nil
	}
	ids, err := json.Marshal(deviceIDs)
	if err != nil {
		return nil, err
	}
	// One statement for any number of devices (json_each), so that it is
	// prepared once.
	rows, err := s.r.QueryContext(ctx, "SELECT device_id, records, bytes, refusals FROM quota_usage WHERE day = ? AND device_id IN (SELECT value FROM json_each(?))",
		day, string(ids))
	if err != nil {
		return nil, fmt.Errorf("read quota usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var u QuotaUsage
		if err := rows.Scan(&id, &u.Records, &u.Bytes, &u.Refusals); err != nil {
			return nil, err
		}
		out[id] = u
	}
	return out, rows.Err()
}
