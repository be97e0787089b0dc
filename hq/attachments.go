package hq

import (
	"context"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// attachmentsMigration (migration 3) adds the files attached to records,
// as references only: the changelog carries a record's attachments
// (pb.Attachment: SHA-256, size, type, caption), never their bytes, and
// the model keeps what it carries. The bytes stay in syncd's
// attachments.db; the HQ page fetches them through web.Files.
//
// One row per record and file, n in the record's order (clock order of
// the attach); kind is the record's; village_id and town_id are the
// record's, for a town secretary's scope.
const attachmentsMigration = `
CREATE TABLE attachments (
	record_id TEXT NOT NULL, sha256 TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL,
	size INTEGER NOT NULL, media_type TEXT NOT NULL, caption TEXT NOT NULL,
	author_id TEXT NOT NULL, hlc TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL,
	PRIMARY KEY (record_id, sha256));
CREATE INDEX attachments_sha256 ON attachments (sha256);
`

// applyAttachments writes a record's attachments whole again (the record
// version was checked by applyRecord): a record's files only grow, but
// writing them whole keeps the table equal to the last change applied.
func applyAttachments(ctx context.Context, tx *txc, r *pb.Record, village, town, region string, held bool) error {
	if held {
		if _, err := tx.ExecContext(ctx, "DELETE FROM attachments WHERE record_id = ?", r.GetId()); err != nil {
			return err
		}
	}
	for n, a := range r.GetAttachments() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO attachments (record_id, sha256, n, kind, size, media_type, caption, author_id, hlc, village_id, town_id, region)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, sha256) DO NOTHING`,
			r.GetId(), a.GetSha256(), n, domain.KindName(r.GetKind()), a.GetSize(), a.GetMediaType(), a.GetCaption(),
			a.GetAuthorId(), a.GetHlc(), village, town, region); err != nil {
			return err
		}
	}
	return nil
}
