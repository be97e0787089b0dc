package server

import (
	"context"
	"fmt"
)

// ScopeOf returns the buckets a user's devices receive, as Sync computes
// them. Tools and tests use it to check what a device should hold.
func (s *Server) ScopeOf(ctx context.Context, userID string) ([]string, error) {
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", userID, err)
	}
	return s.scope(ctx, &caller{userID: userID, role: u.User.GetRole(), villageID: u.VillageID, townID: u.TownID})
}
