package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// HQ's export hands over each record's body as it is stored, never
// decoded: the records table keeps the body as the protobuf encoding of
// fieldsync.v1.Record (PutRecord writes it), which is exactly what goes on
// the wire, so the export service frames the bytes into its answer as they
// are. Decoding every body here and re-encoding it in gRPC was most of the
// export's CPU (syncbench's profile). The version, needed to resume, is
// read from its own column beside the body.

// Export calls each for up to limit records with a version after the
// given one, in version order, only of the given kinds if any are given,
// with the record's version and its stored body (the protobuf encoding of
// fieldsync.v1.Record). body is valid only during the call: copy it to keep
// it. each returns false to stop before the limit; whether it kept the row
// it stopped at is its own affair (it resumes from the last version it
// kept).
func (s *Server) Export(ctx context.Context, after uint64, kinds []pb.Kind, limit int, each func(version uint64, body []byte) bool) error {
	query := "SELECT version, body FROM records WHERE version > ?"
	args := []any{after}
	if len(kinds) > 0 {
		query += " AND kind IN (SELECT value FROM json_each(?))"
		ks := make([]string, len(kinds))
		for i, k := range kinds {
			ks[i] = fmt.Sprint(int(k))
		}
		args = append(args, "["+strings.Join(ks, ",")+"]")
	}
	query += " ORDER BY version LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var version int64     // not uint64, which database/sql converts through a string
		var body sql.RawBytes // not copied: each copies what it keeps
		if err := rows.Scan(&version, &body); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if !each(uint64(version), body) {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return rows.Close()
}
