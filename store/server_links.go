package store

import (
	"database/sql"
	"errors"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Unlink removes a household's link and returns the member it was linked
// to ("" if none). The member's devices are woken to purge it. A removed
// link goes on the changelog as Link's does.
func (t *Tx) Unlink(householdID string, who ChangeInfo, by string) (string, error) {
	var prev string
	err := t.QueryRow("SELECT member_id FROM links WHERE household_id = ?", householdID).Scan(&prev)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if _, err := t.Exec("DELETE FROM links WHERE household_id = ?", householdID); err != nil {
		return "", err
	}
	t.relinked = true
	if prev != "" {
		t.PokeBuckets(domain.UserBucket(prev))
	}
	return prev, t.linkChanged(householdID, "", prev, who, by)
}

// VillageUsers lists, by id, the users with a role who work in a village
// (a member: in one of its grids).
func (t *Tx) VillageUsers(villageID string, role pb.Role) ([]string, error) {
	return strings1(t.ctx, txq{t}, "SELECT id FROM users WHERE village_id = ? AND role = ? ORDER BY id", villageID, int(role))
}
