package store

import (
	"database/sql"
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ackedMigration keeps acknowledged mutations in the outbox (status
// OutboxAcked, with when) for a while instead of deleting them: a server
// restored from a backup may have lost them, and the device then sends them
// again (Renumber); TrimAcked bounds what is kept.
const ackedMigration = `ALTER TABLE outbox ADD COLUMN acked_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_status ON outbox (status, seq);`

// AckOutbox marks a mutation applied by the server, keeping it for a while
// (TrimAcked).
func (t *RTx) AckOutbox(seq uint64, nowMs int64) error {
	_, err := t.tx.ExecContext(t.ctx, "UPDATE outbox SET status = ?, acked_ms = ? WHERE seq = ?", OutboxAcked, nowMs, seq)
	return err
}

// TrimAcked deletes the acknowledged mutations acknowledged before
// beforeMs, and all but the newest keep of them. It returns how many went.
func (t *RTx) TrimAcked(beforeMs int64, keep int) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, `DELETE FROM outbox WHERE status = ? AND (acked_ms < ? OR seq <= (
		SELECT seq FROM outbox WHERE status = ? ORDER BY seq DESC LIMIT 1 OFFSET ?))`, OutboxAcked, beforeMs, OutboxAcked, keep)
	if err != nil {
		return 0, fmt.Errorf("trim acknowledged mutations: %w", err)
	}
	return res.RowsAffected()
}

// DeleteAckedFor deletes a record's acknowledged mutations: the record left
// the device, and what they carry must go with it.
func (t *RTx) DeleteAckedFor(recordID string) error {
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM outbox WHERE record_id = ? AND status = ?", recordID, OutboxAcked)
	return err
}

// DeleteAckedOfUnheld deletes the acknowledged mutations of records the
// device holds no server copy of.
func (t *RTx) DeleteAckedOfUnheld() error {
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM outbox WHERE status = ? AND record_id NOT IN (SELECT id FROM records WHERE base IS NOT NULL)", OutboxAcked)
	return err
}

// DeleteAcked deletes every acknowledged mutation.
func (t *RTx) DeleteAcked() error {
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM outbox WHERE status = ?", OutboxAcked)
	return err
}

// LastAcked is the highest mutation number the server has answered, as the
// device knows it: the number before its first pending mutation, or, with
// none pending, the last it numbered (nextSeq - 1).
func (t *RTx) LastAcked(nextSeq uint64) (uint64, error) {
	var first sql.NullInt64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT MIN(seq) FROM outbox WHERE status = ?", OutboxPending).Scan(&first); err != nil {
		return 0, fmt.Errorf("first pending mutation: %w", err)
	}
	if first.Valid && first.Int64 > 0 {
		return uint64(first.Int64) - 1, nil
	}
	if nextSeq == 0 {
		return 0, nil
	}
	return nextSeq - 1, nil
}

// Renumbered says what Renumber did.
type Renumbered struct {
	Pending int    // pending mutations given new numbers
	Resent  int    // acknowledged or rejected ones past last, to be sent again
	Next    uint64 // the next number to use
}

// Renumber numbers again, consecutively from last+1 and in their order,
// every pending mutation and every acknowledged or rejected one numbered
// past last (the server no longer has those), all of them pending; the
// number inside each stored mutation is rewritten too. Used when the
// device's numbering went back (a restored phone) or the server's did (a
// restored server): afterwards the device's next mutation is the server's
// next number.
func (t *RTx) Renumber(last uint64) (Renumbered, error) {
	var out Renumbered
	type row struct {
		seq       uint64
		recordID  string
		body      []byte
		status    int
		createdMs int64
	}
	rows, err := t.tx.QueryContext(t.ctx, "SELECT seq, record_id, body, status, created_ms FROM outbox WHERE status = ? OR seq > ? ORDER BY seq", OutboxPending, last)
	if err != nil {
		return out, fmt.Errorf("renumber: %w", err)
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.recordID, &r.body, &r.status, &r.createdMs); err != nil {
			rows.Close()
			return out, fmt.Errorf("renumber: %w", err)
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("renumber: %w", err)
	}
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM outbox WHERE status = ? OR seq > ?", OutboxPending, last); err != nil {
		return out, fmt.Errorf("renumber: %w", err)
	}
	next := last + 1
	for _, r := range all {
		plain, err := t.seal.open(r.body, "outbox", "body", seqRow(r.seq))
		if err != nil {
			return out, fmt.Errorf("renumber: %w", err)
		}
		m := &pb.Mutation{}
		if err := proto.Unmarshal(plain, m); err != nil {
			return out, fmt.Errorf("renumber: decode mutation %d: %w", r.seq, err)
		}
		m.Seq = next
		body, err := proto.Marshal(m)
		if err != nil {
			return out, fmt.Errorf("renumber: encode mutation %d: %w", r.seq, err)
		}
		if _, err := t.tx.ExecContext(t.ctx, "INSERT INTO outbox (seq, record_id, body, reason, created_ms) VALUES (?, ?, ?, ?, ?)", next, r.recordID,
			t.seal.seal(body, "outbox", "body", seqRow(next)), t.seal.sealText("", "outbox", "reason", seqRow(next)), r.createdMs); err != nil {
			return out, fmt.Errorf("renumber %d as %d: %w", r.seq, next, err)
		}
		if r.status == OutboxPending {
			out.Pending++
		} else {
			out.Resent++
		}
		next++
	}
	out.Next = next
	return out, nil
}

// ResetCursors sets every cursor back to 0: the next sync reads the whole
// scope again.
func (t *RTx) ResetCursors() error {
	_, err := t.tx.ExecContext(t.ctx, "UPDATE cursors SET seq = 0")
	return err
}

// DropBase forgets what the server sent, since the server's database went
// back in time and no longer vouches for it: records with no pending or
// rejected mutation are deleted, the others keep their local view with no
// base. The device then reads its whole scope again.
func (t *RTx) DropBase() error {
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM records WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.record_id = records.id AND o.status != ?)", OutboxAcked); err != nil {
		return fmt.Errorf("drop base: %w", err)
	}
	for _, q := range []string{"UPDATE records SET base = NULL", "DELETE FROM record_buckets"} {
		if _, err := t.tx.ExecContext(t.ctx, q); err != nil {
			return fmt.Errorf("drop base: %w", err)
		}
	}
	return nil
}

// RewritePending calls fn on each pending mutation in order and stores the
// ones it reports changed (their number must stay).
func (t *RTx) RewritePending(fn func(*pb.Mutation) bool) error {
	rows, err := t.Outbox(OutboxPending, 1<<30)
	if err != nil {
		return err
	}
	for _, r := range rows {
		seq := r.Mutation.GetSeq()
		if !fn(r.Mutation) {
			continue
		}
		if r.Mutation.GetSeq() != seq {
			return fmt.Errorf("rewrite pending mutation %d: its number changed to %d", seq, r.Mutation.GetSeq())
		}
		body, err := proto.Marshal(r.Mutation)
		if err != nil {
			return err
		}
		if _, err := t.tx.ExecContext(t.ctx, "UPDATE outbox SET body = ? WHERE seq = ?", t.seal.seal(body, "outbox", "body", seqRow(seq)), seq); err != nil {
			return fmt.Errorf("rewrite pending mutation %d: %w", seq, err)
		}
	}
	return nil
}
