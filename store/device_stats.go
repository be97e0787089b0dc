package store

import (
	"context"
	"fmt"
	"strings"
)

// StaleDevices counts the enrolled devices that are not revoked (total)
// and, for each cutoff (Unix milliseconds), those whose last sync, or
// enrollment if they never synced, is before it. One scan of the devices
// table (a few milliseconds for a city's 20,000 phones), for the metrics.
func (s *Server) StaleDevices(ctx context.Context, cutoffsMs []int64) (total int64, stale []int64, err error) {
	var q strings.Builder
	q.WriteString("SELECT COUNT(*)")
	args := make([]any, len(cutoffsMs))
	for i, c := range cutoffsMs {
		q.WriteString(", COALESCE(SUM(MAX(last_seen_ms, enrolled_ms) < ?), 0)")
		args[i] = c
	}
	q.WriteString(" FROM devices WHERE revoked_ms = 0")
	stale = make([]int64, len(cutoffsMs))
	dest := []any{&total}
	for i := range stale {
		dest = append(dest, &stale[i])
	}
	if err := s.r.QueryRowContext(ctx, q.String(), args...).Scan(dest...); err != nil {
		return 0, nil, fmt.Errorf("count stale devices: %w", err)
	}
	return total, stale, nil
}
