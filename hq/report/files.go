package report

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
)

// FileRef is one file attached to a record, as the read model holds it
// (a reference: the bytes are syncd's).
type FileRef struct {
	RecordID  string
	Kind      string // the record's kind
	SHA256    string
	Size      int64
	MediaType string
	Caption   string
	AuthorID  string
	Village   string
	Town      string
}

// Thumbnailed says whether the HQ page makes a thumbnail of a file of
// this type (it decodes JPEG and PNG; WebP and PDF get an icon).
func Thumbnailed(mediaType string) bool {
	return mediaType == "image/jpeg" || mediaType == "image/png"
}

// FileLink is the HQ page's path of a record's file; ThumbLink its
// thumbnail's.
func FileLink(recordID, sha string) string {
	return "/f/" + url.PathEscape(recordID) + "/" + sha
}

// ThumbLink is the path of a file's thumbnail (JPEG and PNG only).
func ThumbLink(recordID, sha string) string { return FileLink(recordID, sha) + "/thumb" }

var shaRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// File returns the reference of the file sha attached to record recordID,
// for q's asker: ErrBadQuery for a malformed hash, ErrNotFound when the
// record names no such file, ErrOutOfScope when the record lies outside a
// town secretary's town. The scope is the record's, as for its row.
func File(ctx context.Context, db *sql.DB, q Query, recordID, sha string) (*FileRef, error) {
	if !shaRe.MatchString(sha) {
		return nil, fmt.Errorf("%w: file %q: want its SHA-256, 64 lowercase hex digits", ErrBadQuery, clipText(sha))
	}
	refs, err := Files(ctx, db, q, recordID)
	if err != nil {
		return nil, err
	}
	for _, f := range refs {
		if f.SHA256 == sha {
			return f, nil
		}
	}
	return nil, fmt.Errorf("%w: record %s has no file %s", ErrNotFound, recordID, sha)
}

// Files lists the files attached to record recordID in its order, for q's
// asker (ErrNotFound: no record with files; ErrOutOfScope: outside a town
// secretary's town).
func Files(ctx context.Context, db *sql.DB, q Query, recordID string) ([]*FileRef, error) {
	if recordID == "" || len(recordID) > 100 {
		return nil, fmt.Errorf("%w: record %q: want a record's id", ErrBadQuery, clipText(recordID))
	}
	if ok, err := hasAttachments(ctx, db); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: record %q has no files (this read model keeps none)", ErrNotFound, recordID)
		}
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT record_id, kind, sha256, size, media_type, caption, author_id, village_id, town_id
		FROM attachments WHERE record_id = ? ORDER BY n`, recordID)
	if err != nil {
		return nil, fmt.Errorf("report: attachments: %w", err)
	}
	defer rows.Close()
	var out []*FileRef
	for rows.Next() {
		f := &FileRef{}
		if err := rows.Scan(&f.RecordID, &f.Kind, &f.SHA256, &f.Size, &f.MediaType, &f.Caption, &f.AuthorID, &f.Village, &f.Town); err != nil {
			return nil, fmt.Errorf("report: attachments: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: attachments: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: record %q has no files (or no such record)", ErrNotFound, recordID)
	}
	if q.Town != "" && out[0].Town != q.Town {
		return nil, fmt.Errorf("%w: record %s is not in your town %s", ErrOutOfScope, recordID, q.Town)
	}
	return out, nil
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// filesPage is the files of one record (filter record): each with its
// thumbnail (Cell.Image) or its type's icon, linked to the file itself.
func filesPage(e *env) (*Result, error) {
	id, ok := e.filter["record"]
	if !ok {
		return nil, fmt.Errorf("%w: page files needs record (a record's id)", ErrBadQuery)
	}
	refs, err := Files(e.ctx, e.db, e.q, id)
	if err != nil {
		return nil, err
	}
	t := Table{Name: "files", Title: label(e.lang, "page.files") + " · " + id,
		Columns: []Column{e.col("file", false), e.col("caption", false), e.col("media_type", false), e.col("size", true),
			e.col("attached_by", false), e.col("sha256", false)}}
	for _, f := range refs {
		link := FileLink(f.RecordID, f.SHA256)
		img := "/static/file.svg"
		if Thumbnailed(f.MediaType) {
			img = ThumbLink(f.RecordID, f.SHA256)
		}
		caption := f.Caption
		if caption == "" {
			caption = f.SHA256[:12]
		}
		t.Rows = append(t.Rows, []Cell{{Text: caption, Link: link, Image: img}, txtLink(f.Caption, link), txt(f.MediaType),
			{Text: strconv.FormatInt(f.Size, 10), Num: float64(f.Size)}, txt(f.AuthorID), txt(f.SHA256)})
	}
	return &Result{Title: label(e.lang, "page.files") + " · " + id, Tables: []Table{t}}, nil
}

// fileCounts returns how many files each of the records ids has (only
// those with any).
func (e *env) fileCounts() (map[string]int64, error) {
	out := map[string]int64{}
	if ok, err := hasAttachments(e.ctx, e.db); err != nil || !ok {
		return out, err
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT record_id, count(*) FROM attachments GROUP BY record_id`)
	if err != nil {
		return nil, fmt.Errorf("report: attachments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// filesCell is a row's count of files linked to its files page ("" for
// none).
func filesCell(counts map[string]int64, id string) Cell {
	n := counts[id]
	if n == 0 {
		return Cell{Text: "0"}
	}
	return num(n, "/p/files?record="+url.QueryEscape(id))
}

// hasAttachments says whether the model has the attachments table (hq's
// migration 3): the report also reads a database of schema.sql alone, as
// it counts from the base tables, and such a one keeps no files.
func hasAttachments(ctx context.Context, db *sql.DB) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'attachments'`).Scan(&n); err != nil {
		return false, fmt.Errorf("report: attachments: %w", err)
	}
	return n > 0, nil
}
