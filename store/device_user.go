package store

import (
	"database/sql"
	"errors"
)

// DeviceUser returns the user a device was enrolled for (revoked or not),
// or ErrNotFound. The merge names the author of a value pushed into a
// conflict through it: a field keeps only its clock, whose node is the
// device that wrote it.
func (t *Tx) DeviceUser(deviceID string) (string, error) {
	var user string
	err := t.QueryRow("SELECT user_id FROM devices WHERE id = ?", deviceID).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return user, err
}
