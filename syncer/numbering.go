package syncer

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// How long acknowledged mutations stay in the outbox, and how many at most.
// They are kept for one thing: a server restored from a backup lost what it
// acknowledged after the backup, and the device sends it again
// (NUMBERING_SERVER_BEHIND). 30 days covers a server restored from last
// week's backup and noticed late, and a phone that syncs once a week; the
// cap bounds the disk they take on a busy phone (a field officer makes a
// few hundred mutations a day; 20,000 rows are a few MB). Older work than
// that is lost to such a restore: the server's own backups must be younger.
const (
	ackedRetention = 30 * 24 * time.Hour
	ackedKeep      = 20000
)

// maxRenumbers bounds how often one Sync renumbers the outbox: the server
// says once that the numbering went back, and the next call agrees.
const maxRenumbers = 3

// adoptNumbering acts on an answer saying that the device's numbering and
// the server's disagree, in the transaction that adopts the answer, after
// its results: the device's unanswered work, and what it holds past the
// server's last number, is numbered again after that number and sent in
// the next call. It reports whether it renumbered and whether the cursors
// must go back to 0 (a restored phone reads its scope again). Records whose
// pending events were chained again are added to touched.
func adoptNumbering(tx *store.RTx, resp *pb.SyncResponse, now time.Time, touched map[string]bool) (renumbered, resetCursors bool, err error) {
	n := resp.GetNumbering()
	if n != pb.Numbering_NUMBERING_DEVICE_BEHIND && n != pb.Numbering_NUMBERING_SERVER_BEHIND {
		return false, false, nil
	}
	// The last number the server answered, before renumbering: with what
	// the device still keeps past the server's last, it tells how much of
	// what the server lost the device can no longer send (trimmed after
	// ackedRetention or ackedKeep).
	next, err := tx.MetaInt(metaNextSeq)
	if err != nil {
		return false, false, err
	}
	answered, err := tx.LastAcked(uint64(next))
	if err != nil {
		return false, false, err
	}
	r, err := tx.Renumber(resp.GetLastSeq())
	if err != nil {
		return false, false, err
	}
	if err := tx.SetMeta(metaNextSeq, itoa(int64(r.Next))); err != nil {
		return false, false, err
	}
	when := now.UTC().Format("2006-01-02 15:04 MST")
	var notice string
	if n == pb.Numbering_NUMBERING_DEVICE_BEHIND {
		notice = fmt.Sprintf("%s: this phone's data was restored from an older copy: %d unsent changes were numbered again after the server's last (%d) and sent; the phone reads all its records again; nothing was lost",
			when, r.Pending+r.Resent, resp.GetLastSeq())
		if id := resp.GetReplicaId(); id != "" {
			if err := tx.SetMeta(metaReplica, id); err != nil {
				return false, false, err
			}
		}
		// The copy's chain head is older than the server's: its unsent
		// events chain on the server's instead, or the chain would fork.
		if err := rechain(tx, resp.GetChainHead(), touched); err != nil {
			return false, false, err
		}
		resetCursors = true
	} else {
		notice = fmt.Sprintf("%s: the server was restored from a backup: %d changes it had lost were sent again, with %d not sent before; nothing was lost",
			when, r.Resent, r.Pending)
		if last := resp.GetLastSeq(); answered > last && answered-last > uint64(r.Resent) {
			notice = fmt.Sprintf("%s: the server was restored from a backup: %d changes it had lost were sent again, with %d not sent before; %d more it had acknowledged were no longer kept on this phone (kept %d days, at most %d) and are lost unless the server is restored from a later backup: tell IT support",
				when, r.Resent, r.Pending, answered-last-uint64(r.Resent), int(ackedRetention/(24*time.Hour)), ackedKeep)
		}
	}
	return true, resetCursors, tx.SetMeta(metaNotice, notice)
}

// adoptLineage notes the server database's lineage. When it differs from
// the one stored, the server went back in time: what it sent before is no
// longer vouched for, so the device drops it (keeping its own unsent work)
// and reads its whole scope again. It reports whether it did.
func adoptLineage(tx *store.RTx, resp *pb.SyncResponse) (bool, error) {
	lineage := resp.GetLineage()
	if lineage == "" { // an older server
		return false, nil
	}
	had, err := tx.Meta(metaLineage)
	if err != nil {
		return false, err
	}
	if had == lineage {
		return false, nil
	}
	if err := tx.SetMeta(metaLineage, lineage); err != nil {
		return false, err
	}
	if had == "" {
		return false, nil
	}
	if err := tx.DropBase(); err != nil {
		return false, err
	}
	// Records dropped here that the new read does not bring back left the
	// scope: their acknowledged mutations go once that read is done
	// (endReread), as a purge takes them.
	return true, tx.SetMeta(metaReread, "1")
}

// endReread, at the end of the read that follows a new lineage, deletes
// the acknowledged mutations of records the device no longer holds from
// the server: the read did not bring them back, so they left the scope,
// and what those mutations carry must go with them.
func endReread(tx *store.RTx) error {
	if on, err := tx.Meta(metaReread); err != nil || on == "" {
		return err
	}
	if err := tx.DeleteAckedOfUnheld(); err != nil {
		return err
	}
	return tx.SetMeta(metaReread, "")
}

// isCloned reports whether a Sync error is the server's refusal of a
// second copy of the device's database.
func isCloned(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == "DEVICE_CLONED" && ei.GetDomain() == "fieldsync.v1" {
			return true
		}
	}
	return false
}

// stopCloned marks this copy stopped after the server refused it as a
// clone: it syncs no more until enrolled again, and keeps its work.
func stopCloned(tx *store.RTx, err error, now time.Time) error {
	if err := tx.SetMeta(metaStopped, "cloned"); err != nil {
		return err
	}
	return tx.SetMeta(metaNotice, now.UTC().Format("2006-01-02 15:04 MST")+": "+ErrCloned.Error()+" (server: "+status.Convert(err).Message()+")")
}

// stoppedUnknown is metaStopped's value when the server did not know the
// device's credential (ErrUnknownDevice); "cloned" when it refused a copy.
const stoppedUnknown = "unknown"

// isUnknownDevice reports whether a Sync error is the server's word that it
// does not know the device's credential (ErrorInfo DEVICE_UNKNOWN; an older
// server says it in words only).
func isUnknownDevice(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == "DEVICE_UNKNOWN" && ei.GetDomain() == "fieldsync.v1" {
			return true
		}
	}
	return strings.HasPrefix(st.Message(), "device credential unknown")
}

// stopUnknown marks the device stopped after the server said it does not
// know it: it syncs no more until enrolled again, and keeps its work.
func stopUnknown(tx *store.RTx, err error, now time.Time) error {
	if err := tx.SetMeta(metaStopped, stoppedUnknown); err != nil {
		return err
	}
	return tx.SetMeta(metaNotice, now.UTC().Format("2006-01-02 15:04 MST")+": "+ErrUnknownDevice.Error()+" (server: "+status.Convert(err).Message()+")")
}

// reenroll readies a stopped copy's outbox for its new device id: its
// acknowledged mutations belong to the old device's numbering and go; its
// pending and rejected ones are numbered again from 1, all pending (a
// rejection is sent again and answered again: the new device's numbers must
// have no holes). A device the server did not know (keepAcked: the server
// went back to before it enrolled) keeps its acknowledged mutations too, and
// sends them again first: the server that acknowledged them is gone. It
// returns the next number.
func reenroll(tx *store.RTx, oldID, newID string, keepAcked bool, touched map[string]bool) (uint64, error) {
	if !keepAcked {
		if err := tx.DeleteAcked(); err != nil {
			return 0, err
		}
	}
	r, err := tx.Renumber(0)
	if err != nil {
		return 0, err
	}
	// A new device starts a new chain: its events may not follow the old
	// device's.
	if err := rechain(tx, "", touched); err != nil {
		return 0, err
	}
	if err := tx.SetMeta(metaStopped, ""); err != nil {
		return 0, err
	}
	why := "stopped as a copy"
	if keepAcked {
		why = "unknown to the server"
	}
	notice := fmt.Sprintf("enrolled again as device %s (was %s, %s): %d unsent changes are sent as this device's", newID, oldID, why, r.Pending+r.Resent)
	return r.Next, tx.SetMeta(metaNotice, notice)
}

// rechain chains the pending events again, in order, on head ("" starts a
// chain), and makes the last of them (or head) the device's chain head.
func rechain(tx *store.RTx, head string, touched map[string]bool) error {
	prev := head
	err := tx.RewritePending(func(m *pb.Mutation) bool {
		if m.GetKind() != pb.Kind_KIND_EVENT || m.GetOp() != pb.Op_OP_CREATE {
			return false
		}
		delete(m.Fields, "hash")
		if prev != "" {
			m.Fields["prev_hash"] = prev
		} else {
			delete(m.Fields, "prev_hash")
		}
		m.Fields["hash"] = domain.EventHash(m.Fields)
		prev = m.Fields["hash"]
		touched[m.GetRecordId()] = true
		return true
	})
	if err != nil {
		return err
	}
	return tx.SetMeta(metaChain, prev)
}

// newReplicaID names a copy of a device database.
func newReplicaID() string { return domain.RandomToken(12) }
