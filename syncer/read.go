package syncer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Item is a record as the user sees it on the device.
type Item struct {
	ID      string
	Kind    string
	State   string // synced, pending, rejected, conflict
	Reason  string // why rejected, or how many conflicts
	Version uint64 // the server's version (0 if the server has not sent it)
	Author  string
	Record  *pb.Record // the local view, with fields, entries and conflicts
	// Attachments are the files the record names, with their state on
	// this device (attach.go).
	Attachments []*Attachment
}

// Field returns a field's value.
func (it *Item) Field(name string) string { return it.Record.GetFields()[name].GetValue() }

// Voided says the record was voided (Record.void says why, by whom): it is
// shown marked and counts nowhere.
func (it *Item) Voided() bool { return it.Record.GetVoid() != nil }

func toItem(lr *store.LocalRecord) *Item {
	it := &Item{ID: lr.Local.GetId(), Kind: domain.KindName(lr.Local.GetKind()), State: StateName(lr.State),
		Reason: lr.Reason, Author: lr.Local.GetAuthorId(), Record: lr.Local}
	if lr.Base != nil {
		it.Version = lr.Base.GetVersion()
	}
	return it
}

// Get returns one record.
func (d *Device) Get(id string) (*Item, error) {
	var it *Item
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		lr, err := tx.Record(id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		it = toItem(lr)
		it.Attachments, err = attachmentsOf(tx, lr.Local)
		return err
	})
	return it, err
}

// List returns the records of a kind ("" for all), by id.
func (d *Device) List(kind string) ([]*Item, error) {
	k := pb.Kind_KIND_UNSPECIFIED
	if kind != "" {
		var ok bool
		if k, ok = domain.ParseKind(kind); !ok {
			return nil, fmt.Errorf("kind %q: want one of %s", kind, strings.Join(domain.KindNames(), ", "))
		}
	}
	var items []*Item
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		recs, err := tx.Records(k)
		for _, lr := range recs {
			it := toItem(lr)
			if it.Attachments, err = attachmentsOf(tx, lr.Local); err != nil {
				return err
			}
			items = append(items, it)
		}
		return err
	})
	return items, err
}

// Rejection is a mutation the server refused, kept on the device.
type Rejection struct {
	Seq      uint64
	RecordID string
	Kind     string
	Op       string
	Code     string
	Field    string
	Reason   string
}

// Rejections lists the refused mutations, oldest first.
func (d *Device) Rejections() ([]*Rejection, error) {
	var out []*Rejection
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		rows, err := tx.Outbox(store.OutboxRejected, 1<<30)
		for _, r := range rows {
			out = append(out, &Rejection{Seq: r.Mutation.GetSeq(), RecordID: r.Mutation.GetRecordId(), Kind: domain.KindName(r.Mutation.GetKind()),
				Op: opName(r.Mutation.GetOp()), Code: r.Code, Field: r.Field, Reason: r.Reason})
		}
		return err
	})
	return out, err
}

func opName(op pb.Op) string {
	switch op {
	case pb.Op_OP_CREATE:
		return "create"
	case pb.Op_OP_UPDATE:
		return "update"
	case pb.Op_OP_TRANSITION:
		return "transition"
	case pb.Op_OP_APPEND:
		return "append"
	case pb.Op_OP_VOID:
		return "void"
	case pb.Op_OP_SETTLE:
		return "settle"
	case pb.Op_OP_ATTACH:
		return "attach"
	}
	return "unknown"
}

// Status summarises the device.
type Status struct {
	Identity
	Pending       int // mutations waiting to be sent
	Rejected      int // mutations refused, kept for the user
	Records       int
	Conflicts     int // records with conflicts to settle
	Buckets       int
	LastSyncMs    int64
	LastError     string
	ClockOffsetMs int64
	// Notice is what the user should know of the last time this phone's
	// numbering was set right: its data was restored from an older copy,
	// or the server was restored from a backup (with what was sent again).
	Notice string
	// Stopped says why this copy of the database syncs no more ("cloned":
	// another copy syncs with the same credential; enroll again to send its
	// work), or "".
	Stopped string
	// Acked is how many acknowledged mutations are kept, to be sent again
	// if the server loses them.
	Acked int
	// FilesPending is how many files attached here wait for their upload
	// (pending or uploading); FilesRefused how many were refused (each
	// shown with its reason by Attachments).
	FilesPending, FilesRefused int
}

// Status returns the device's summary.
func (d *Device) Status() (*Status, error) {
	st := &Status{}
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		id, err := d.identity(tx)
		if err != nil {
			return err
		}
		st.Identity = *id
		if st.Pending, err = tx.CountOutbox(store.OutboxPending); err != nil {
			return err
		}
		if st.Rejected, err = tx.CountOutbox(store.OutboxRejected); err != nil {
			return err
		}
		counts, err := tx.CountRecords()
		if err != nil {
			return err
		}
		for s, n := range counts {
			st.Records += n
			if s == StateConflict {
				st.Conflicts = n
			}
		}
		cur, err := tx.Cursors()
		st.Buckets = len(cur)
		if err != nil {
			return err
		}
		if st.LastSyncMs, err = tx.MetaInt(metaLastSync); err != nil {
			return err
		}
		if st.ClockOffsetMs, err = tx.MetaInt(metaOffset); err != nil {
			return err
		}
		if st.Notice, err = tx.Meta(metaNotice); err != nil {
			return err
		}
		if st.Stopped, err = tx.Meta(metaStopped); err != nil {
			return err
		}
		if st.Acked, err = tx.CountOutbox(store.OutboxAcked); err != nil {
			return err
		}
		files, err := tx.CountFiles()
		if err != nil {
			return err
		}
		st.FilesPending, st.FilesRefused = files[store.FilePending]+files[store.FileUploading], files[store.FileRefused]

		st.LastError, err = tx.Meta(metaLastErr)
		return err
	})
	return st, err
}

// Cursors returns the device's cursor of each bucket in its scope.
func (d *Device) Cursors() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		cs, err := tx.Cursors()
		for _, c := range cs {
			out[c.GetBucket()] = c.GetSeq()
		}
		return err
	})
	return out, err
}
