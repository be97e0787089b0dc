package store

// refetchMigration lets a device replace its copy of a bucket the server
// answers from the start (SyncResponse.refetch_buckets: its cursor was
// older than the server's retention window, so marks of records that left
// the bucket may be gone). refetching lists the buckets being read again;
// stale the records that sat in one of them when it began and have not
// come again since. Both are written in the transaction of each page, so
// a crash mid-way resumes where the last page left off.
const refetchMigration = `CREATE TABLE refetching (bucket TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE stale (bucket TEXT NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (bucket, record_id)) WITHOUT ROWID;
CREATE INDEX stale_record ON stale (record_id);`

// BeginRefetch starts reading a bucket again from the start: every record
// the device holds in it is marked stale until the server sends it again.
// A bucket already being read again starts over.
func (t *RTx) BeginRefetch(bucket string) error {
	for _, q := range []string{
		"INSERT OR IGNORE INTO refetching (bucket) VALUES (?)",
		"DELETE FROM stale WHERE bucket = ?",
		"INSERT INTO stale (bucket, record_id) SELECT bucket, record_id FROM record_buckets WHERE bucket = ?",
	} {
		if _, err := t.tx.ExecContext(t.ctx, q, bucket); err != nil {
			return err
		}
	}
	return nil
}

// Refetching lists the buckets being read again, sorted.
func (t *RTx) Refetching() ([]string, error) {
	return strings1(t.ctx, t.tx, "SELECT bucket FROM refetching ORDER BY bucket")
}

// Freshen clears a record's stale marks: the server sent it again, with
// the buckets it sits in (a local write, which keeps the old base, does
// not).
func (t *RTx) Freshen(id string) error {
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM stale WHERE record_id = ?", id)
	return err
}

// EndRefetch ends the reading again of every bucket once the server has
// sent everything (more = false): a record still marked stale in a bucket
// no longer sits there, and a record that then sits in no bucket of the
// scope is purged by the next SetCursors like any record that left. It
// returns how many marks it dropped.
func (t *RTx) EndRefetch() (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM record_buckets WHERE EXISTS (
		SELECT 1 FROM stale s WHERE s.bucket = record_buckets.bucket AND s.record_id = record_buckets.record_id)`)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	for _, q := range []string{"DELETE FROM stale", "DELETE FROM refetching"} {
		if _, err := t.tx.ExecContext(t.ctx, q); err != nil {
			return 0, err
		}
	}
	return n, nil
}
