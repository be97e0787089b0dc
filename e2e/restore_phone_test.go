package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// copyDB copies a closed SQLite database (and its write-ahead log, if one
// was left) from src to dst, as a backup of a phone or a server would. A
// phone's copy opens with the phone's key.
func copyDB(t *testing.T, src, dst string) {
	t.Helper()
	copyKey(src, dst)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(dst + suffix)
		in, err := os.Open(src + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		ok(t, err)
		out := must[*os.File](t)(os.Create(dst + suffix))
		_, err = io.Copy(out, in)
		in.Close()
		ok(t, err)
		ok(t, out.Close())
	}
}

// openPhone opens a device database at path.
func openPhone(t *testing.T, path string) *syncer.Device {
	t.Helper()
	d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: phoneKey(path)}))
	t.Cleanup(func() { d.Close() })
	return d
}

// visits writes n visits on d, each with its own text, and returns their ids.
func visits(t *testing.T, d *syncer.Device, household, tag string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		ids = append(ids, must[string](t)(d.Create("visit", syncer.NewFields().Set("household_id", household).
			Set("visited_on", "2026-11-20").Set("needs", fmt.Sprintf("%s %d", tag, i)))))
	}
	return ids
}

// event writes an event on d and returns its id.
func event(t *testing.T, d *syncer.Device, subject string) string {
	t.Helper()
	return must[string](t)(d.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-11-20").Set("subject", subject)))
}

// chainsVerify checks that each device's events on the server form one
// chain, with no fork or gap.
func chainsVerify(t *testing.T, e *testenv.Env) {
	t.Helper()
	by := map[string][]*pb.Record{}
	for _, r := range export(t, e) {
		if r.GetKind() == pb.Kind_KIND_EVENT {
			by[r.GetOriginDeviceId()] = append(by[r.GetOriginDeviceId()], r)
		}
	}
	links := must[map[string][]domain.ChainLink](t)(e.Store.RefusedLinks(context.Background()))
	for dev, evs := range by {
		if err := domain.VerifyChain(evs, links[dev]...); err != nil {
			t.Errorf("event chain of device %s (%d events): %v", dev, len(evs), err)
		}
	}
}

// changesOf counts the stream's changes by record id.
func changesOf(changes []*pb.Change) map[string]int {
	n := map[string]int{}
	for _, c := range changes {
		n[c.GetRecord().GetId()]++
	}
	return n
}

// deviceRow is a device as the admin device list shows it.
func deviceRow(t *testing.T, e *testenv.Env, id string) *pb.Device {
	t.Helper()
	admin, ctx := e.Admin()
	resp := must[*pb.ListDevicesResponse](t)(admin.ListDevices(ctx, &pb.ListDevicesRequest{PageSize: 1000}))
	for _, d := range resp.GetDevices() {
		if d.GetId() == id {
			return d
		}
	}
	t.Fatalf("device %s not in the admin device list", id)
	return nil
}

// A phone restored from an older copy of its database reuses numbers the
// server applied after the copy was made. The server tells it so instead of
// answering "applied" for other content; the phone renumbers its new work
// after the server's last number, reads its scope again, and everything
// lands exactly once: the 5 writes made after the restore, and the 10 made
// between the copy and the restore, which come back to the phone. The
// phone and the admin device list say it was restored.
func TestRestoredPhoneLosesNothing(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	path := filepath.Join(t.TempDir(), "phone.db")
	d := openPhone(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, d.Enroll(ctx, e.Code(testenv.Member), "phone"))
	before := visits(t, d, "H001", "before the copy", 2)
	before = append(before, event(t, d, "before the copy"))
	testenv.Sync(t, d)
	id := must[*syncer.Identity](t)(d.Identity()).DeviceID

	ok(t, d.Close())
	copyDB(t, path, path+".copy")
	d = openPhone(t, path)
	between := visits(t, d, "H002", "between copy and restore", 9)
	between = append(between, event(t, d, "between copy and restore"))
	if rep := testenv.Sync(t, d); rep.Applied != 10 {
		t.Fatalf("sync after the copy applied %d, want 10", rep.Applied)
	}

	ok(t, d.Close())
	copyDB(t, path+".copy", path) // the phone is restored from the copy
	d = openPhone(t, path)
	after := visits(t, d, "H003", "after the restore", 4)
	after = append(after, event(t, d, "after the restore"))
	testenv.Sync(t, d)

	st := must[*syncer.Status](t)(d.Status())
	if st.Pending != 0 || st.Rejected != 0 {
		t.Fatalf("after the sync: %d pending, %d rejected, want none", st.Pending, st.Rejected)
	}
	if !strings.Contains(st.Notice, "restored from an older copy") || !strings.Contains(st.Notice, "5 unsent changes") {
		t.Fatalf("notice %q: want one saying the phone was restored and its 5 changes were renumbered", st.Notice)
	}
	counts := changesOf(waitStream(t, e))
	for _, ids := range [][]string{before, between, after} {
		for _, rid := range ids {
			if counts[rid] != 1 {
				t.Fatalf("record %s: %d changes in the stream, want exactly 1", rid, counts[rid])
			}
			sameAsServer(t, e, d, rid)
		}
	}
	for i, rid := range after[:4] {
		if got := serverRecord(t, e, rid).GetFields()["needs"].GetValue(); got != fmt.Sprintf("after the restore %d", i) {
			t.Fatalf("record %s on the server: needs %q", rid, got)
		}
	}
	chainsVerify(t, e) // the event made after the restore follows the one made before it, not the copy's
	row := deviceRow(t, e, id)
	if row.GetRestores() != 1 || row.GetRestoredMs() == 0 {
		t.Fatalf("admin device list: restores %d at %d, want 1 restore with its time", row.GetRestores(), row.GetRestoredMs())
	}
	if row.GetLastSeq() != 18 {
		t.Fatalf("device's last number on the server %d, want 18 (3 + 10 + 5)", row.GetLastSeq())
	}

	// The phone goes on normally: a later write lands, no new restore.
	more := visits(t, d, "H001", "later", 1)
	more = append(more, event(t, d, "later"))
	testenv.Sync(t, d)
	sameAsServer(t, e, d, more[0])
	sameAsServer(t, e, d, more[1])
	chainsVerify(t, e)
	if row := deviceRow(t, e, id); row.GetRestores() != 1 {
		t.Fatalf("a normal sync after the restore counted another restore (%d)", row.GetRestores())
	}
}

// Two phones running copies of one database at the same time (a cloned
// phone) are told apart: the copy whose numbers went back renumbers its
// work, and the other is stopped with an error IT support can act on,
// keeping its work, which lands once the phone is enrolled again with a
// new code. Nothing is lost, nothing is doubled.
func TestClonedPhoneIsStoppedAndLosesNothing(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	a := openPhone(t, pathA)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, a.Enroll(ctx, e.Code(testenv.Member), "phone"))
	var all []string
	all = append(all, visits(t, a, "H001", "first", 1)...)
	all = append(all, event(t, a, "first"))
	testenv.Sync(t, a)
	ok(t, a.Close())
	copyDB(t, pathA, pathB)
	a, b := openPhone(t, pathA), openPhone(t, pathB)

	all = append(all, visits(t, a, "H001", "phone a", 2)...)
	testenv.Sync(t, a)
	all = append(all, visits(t, b, "H002", "phone b", 2)...)
	testenv.Sync(t, b) // its numbers 2 and 3 carry other content: renumbered as 4 and 5
	all = append(all, event(t, b, "phone b"))
	testenv.Sync(t, b)
	stopped := visits(t, a, "H003", "phone a, stopped", 1)
	stopped = append(stopped, event(t, a, "phone a, stopped"))
	all = append(all, stopped...)
	_, err := a.Sync(ctx)
	if !errors.Is(err, syncer.ErrCloned) {
		t.Fatalf("sync of the second copy: %v, want ErrCloned", err)
	}
	if !strings.Contains(err.Error(), "enroll this phone again") {
		t.Fatalf("error %q does not say what to do", err)
	}
	st := must[*syncer.Status](t)(a.Status())
	if st.Stopped != "cloned" || st.Pending != 2 {
		t.Fatalf("stopped copy: stopped %q, %d pending; want cloned with its 2 changes kept", st.Stopped, st.Pending)
	}
	if _, err := a.Sync(ctx); !errors.Is(err, syncer.ErrCloned) {
		t.Fatalf("a stopped copy synced again: %v", err)
	}
	// B goes on.
	all = append(all, visits(t, b, "H002", "phone b later", 1)...)
	testenv.Sync(t, b)

	// The stopped copy is enrolled again with a new code: its work lands.
	ok(t, a.Enroll(ctx, e.Code(testenv.Member), "phone a again"))
	testenv.Sync(t, a)
	all = append(all, visits(t, a, "H003", "phone a re-enrolled", 1)...)
	testenv.Sync(t, a)
	testenv.Sync(t, b)

	counts := changesOf(waitStream(t, e))
	for _, rid := range all {
		if counts[rid] != 1 {
			t.Fatalf("record %s: %d changes in the stream, want exactly 1", rid, counts[rid])
		}
		serverRecord(t, e, rid)
		sameAsServer(t, e, a, rid)
		sameAsServer(t, e, b, rid)
	}
	for _, d := range []*syncer.Device{a, b} {
		if st := must[*syncer.Status](t)(d.Status()); st.Pending != 0 || st.Rejected != 0 || st.Stopped != "" {
			t.Fatalf("device %s: %d pending, %d rejected, stopped %q", st.DeviceID, st.Pending, st.Rejected, st.Stopped)
		}
	}
	chainsVerify(t, e)
}

// A server restored from an older backup lost mutations it had
// acknowledged. The devices that hold them (they keep acknowledged work
// for a while) send them again at their next sync: the server then holds
// every mutation any device saw acknowledged, nothing twice, and no device
// is told to re-enroll. Restored as is, the server keeps its lineage (and
// takes cursors past its last change as 0); rebased (as syncd restore
// does), it has a new lineage and the devices drop what it sent before and
// read their scope again.
func TestServerRestoredFromBackupGetsAcknowledgedWorkAgain(t *testing.T) {
	for _, rebase := range []bool{false, true} {
		t.Run(fmt.Sprintf("rebase=%v", rebase), func(t *testing.T) { serverRestored(t, rebase) })
	}
}

func serverRestored(t *testing.T, rebase bool) {
	e := testenv.Start(t)
	e.ImportSample()
	m1, m2 := e.Device(testenv.Member), e.Device(testenv.Member2)
	sec := e.Device(testenv.Secretary) // reads the whole village
	mine := map[*syncer.Device][]string{}
	mine[m1] = visits(t, m1, "H001", "m1 before the backup", 2)
	mine[m2] = visits(t, m2, "H004", "m2 before the backup", 2)
	testenv.Sync(t, m1)
	testenv.Sync(t, m2)

	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyDB(t, db, backup)
	e = restart(t, e)
	mine[m1] = append(mine[m1], visits(t, m1, "H002", "m1 after the backup", 3)...)
	mine[m2] = append(mine[m2], visits(t, m2, "H005", "m2 after the backup", 3)...)
	testenv.Sync(t, m1)
	testenv.Sync(t, m2)
	testenv.Sync(t, sec)
	last := mine[m2][len(mine[m2])-1]
	if _, err := e.Store.Record(context.Background(), last); err != nil {
		t.Fatalf("before the restore: %v", err)
	}

	e.Stop()
	copyDB(t, backup, db) // the server is restored from the backup
	if rebase {
		st := must[*store.Server](t)(store.OpenServer(context.Background(), db))
		must[store.Lineage](t)(st.Rebase(context.Background()))
		ok(t, st.Close())
	}
	e = restart(t, e)
	if _, err := e.Store.Record(context.Background(), last); err == nil {
		t.Fatal("the restored server still holds a record written after the backup: the test restored nothing")
	}
	// One round of syncs, no re-enrollment. The secretary comes first,
	// with cursors past the restored server's last change; the members
	// send their lost work in the other order than before, so the changes
	// get other numbers than the secretary saw.
	testenv.Sync(t, sec)
	testenv.Sync(t, m2)
	testenv.Sync(t, m1)
	testenv.Sync(t, sec)
	n := 0
	for d, ids := range mine {
		for _, rid := range ids {
			sameAsServer(t, e, d, rid)
			n++
		}
		for _, hh := range []string{"H001", "H002", "H003", "H004", "H005"} {
			if _, err := d.Get(hh); err == nil {
				sameAsServer(t, e, d, hh)
			}
		}
	}
	for _, hh := range []string{"H001", "H002", "H003"} { // read again after a new lineage
		sameAsServer(t, e, m1, hh)
	}
	for _, ids := range mine {
		for _, rid := range ids {
			sameAsServer(t, e, sec, rid)
		}
	}
	nvisits := 0
	for _, r := range export(t, e) {
		if r.GetKind() == pb.Kind_KIND_VISIT {
			nvisits++
		}
	}
	if nvisits != n {
		t.Fatalf("server holds %d visits, want %d", nvisits, n)
	}
	for _, d := range []*syncer.Device{m1, m2} {
		st := must[*syncer.Status](t)(d.Status())
		if st.Pending != 0 || st.Rejected != 0 || st.LastError != "" {
			t.Fatalf("device %s: %d pending, %d rejected, last error %q", st.DeviceID, st.Pending, st.Rejected, st.LastError)
		}
		if !strings.Contains(st.Notice, "server was restored from a backup: 3 changes") {
			t.Fatalf("device %s notice %q: want one saying its 3 lost changes were sent again", st.DeviceID, st.Notice)
		}
		if row := deviceRow(t, e, st.DeviceID); row.GetLastSeq() != 5 || row.GetRestores() != 0 {
			t.Fatalf("device %s on the server: last %d, restores %d; want 5 and 0", st.DeviceID, row.GetLastSeq(), row.GetRestores())
		}
	}
}

// dropRestoreAnswer loses the first answer that tells a device its
// numbering went back, after the server committed it.
type dropRestoreAnswer struct{ done atomic.Bool }

func (d *dropRestoreAnswer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if r, isSync := resp.(*pb.SyncResponse); isSync && err == nil && r.GetNumbering() == pb.Numbering_NUMBERING_DEVICE_BEHIND && d.done.CompareAndSwap(false, true) {
		return nil, status.Error(codes.Unavailable, "test: answer lost after commit")
	}
	return resp, err
}

// A restored phone whose answer "your numbering went back" is lost asks
// again with its old replica id: it is answered again, the same way, and
// is not taken for a clone.
func TestRestoredPhoneWithLostAnswerIsNoClone(t *testing.T) {
	drop := &dropRestoreAnswer{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(drop.intercept))
	e.ImportSample()
	path := filepath.Join(t.TempDir(), "phone.db")
	d := openPhone(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, d.Enroll(ctx, e.Code(testenv.Member), "phone"))
	testenv.Sync(t, d)
	ok(t, d.Close())
	copyDB(t, path, path+".copy")
	d = openPhone(t, path)
	between := visits(t, d, "H001", "between", 3)
	testenv.Sync(t, d)
	ok(t, d.Close())
	copyDB(t, path+".copy", path)
	d = openPhone(t, path)
	after := visits(t, d, "H002", "after", 2)
	if _, err := d.Sync(ctx); err == nil || errors.Is(err, syncer.ErrCloned) {
		t.Fatalf("sync whose answer was lost: %v, want a retryable error", err)
	}
	if !drop.done.Load() {
		t.Fatal("no answer said the numbering went back")
	}
	testenv.Sync(t, d)
	for _, rid := range append(between, after...) {
		sameAsServer(t, e, d, rid)
	}
	if row := deviceRow(t, e, must[*syncer.Identity](t)(d.Identity()).DeviceID); row.GetRestores() != 1 || row.GetLastSeq() != 5 {
		t.Fatalf("admin device list: %d restores, last %d; want 1 and 5", row.GetRestores(), row.GetLastSeq())
	}
}

// A phone restored from an older copy after the server's backup was taken,
// then the server restored from that backup: the server does not know the
// phone's new replica id, but the phone saw numbers acknowledged that the
// server lost, so it is the device, not a clone. It sends what the server
// lost, and nothing is lost.
func TestPhoneRestoredThenServerRestored(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	path := filepath.Join(t.TempDir(), "phone.db")
	d := openPhone(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, d.Enroll(ctx, e.Code(testenv.Member), "phone"))
	all := visits(t, d, "H001", "first", 1)
	testenv.Sync(t, d)
	ok(t, d.Close())
	copyDB(t, path, path+".copy")
	d = openPhone(t, path)
	all = append(all, visits(t, d, "H002", "second", 2)...)
	testenv.Sync(t, d)

	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyDB(t, db, backup)
	e = restart(t, e)

	ok(t, d.Close())
	copyDB(t, path+".copy", path) // the phone is restored: a new replica id
	d = openPhone(t, path)
	all = append(all, visits(t, d, "H003", "after the phone's restore", 1)...)
	testenv.Sync(t, d)
	if st := must[*syncer.Status](t)(d.Status()); !strings.Contains(st.Notice, "restored from an older copy") {
		t.Fatalf("notice %q: the phone's restore was not noticed", st.Notice)
	}

	e.Stop()
	copyDB(t, backup, db) // the server is restored: it never saw the new replica id
	e = restart(t, e)
	testenv.Sync(t, d)
	for _, rid := range all {
		sameAsServer(t, e, d, rid)
	}
	if st := must[*syncer.Status](t)(d.Status()); st.Pending != 0 || st.Stopped != "" || !strings.Contains(st.Notice, "server was restored from a backup") {
		t.Fatalf("phone after the server's restore: %d pending, stopped %q, notice %q", st.Pending, st.Stopped, st.Notice)
	}
}

// A copy stopped as a clone still answers for its device: when the device
// is revoked (a phone sold or stolen), the stopped copy is wiped at its
// next sync like any other, and is not left holding its records for good.
func TestStoppedCloneOfARevokedDeviceIsWiped(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	a := openPhone(t, pathA)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, a.Enroll(ctx, e.Code(testenv.Member), "phone"))
	visits(t, a, "H001", "first", 1)
	testenv.Sync(t, a)
	ok(t, a.Close())
	copyDB(t, pathA, pathB)
	a, b := openPhone(t, pathA), openPhone(t, pathB)
	visits(t, a, "H001", "phone a", 1)
	testenv.Sync(t, a)
	visits(t, b, "H002", "phone b", 1)
	testenv.Sync(t, b)
	visits(t, a, "H003", "phone a, stopped", 1)
	if _, err := a.Sync(ctx); !errors.Is(err, syncer.ErrCloned) {
		t.Fatalf("sync of the second copy: %v, want ErrCloned", err)
	}
	if n := len(must[[]*syncer.Item](t)(a.List("household"))); n == 0 {
		t.Fatal("the stopped copy holds no household before the revocation: the test would prove nothing")
	}
	id := must[*syncer.Identity](t)(a.Identity())
	admin, actx := e.Admin()
	_, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: id.DeviceID})
	ok(t, err)
	if _, err := a.Sync(ctx); !errors.Is(err, syncer.ErrRevoked) {
		t.Fatalf("sync of the stopped copy after revocation: %v, want ErrRevoked", err)
	}
	if items, err := a.List("household"); err == nil && len(items) > 0 {
		t.Fatalf("the stopped copy of a revoked device still holds %d households", len(items))
	}
	if st, err := a.Status(); err == nil && st.Pending+st.Acked > 0 {
		t.Fatalf("the stopped copy of a revoked device still holds %d pending and %d acknowledged mutations", st.Pending, st.Acked)
	}
}

// A phone restored from an older copy takes a new replica id at its next
// sync, without writing anything; then the server is restored from a
// backup taken before that sync, which knows only the old id. The phone
// saw nothing acknowledged that the backup lacks, yet it is the device,
// not a clone: it syncs on, and what it writes lands.
func TestServerRestoredToBeforeAPhoneTookItsNewReplicaID(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	path := filepath.Join(t.TempDir(), "phone.db")
	d := openPhone(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok(t, d.Enroll(ctx, e.Code(testenv.Member), "phone"))
	testenv.Sync(t, d)
	ok(t, d.Close())
	copyDB(t, path, path+".copy")
	d = openPhone(t, path)
	all := visits(t, d, "H001", "before the backup", 2)
	testenv.Sync(t, d)

	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyDB(t, db, backup)
	e = restart(t, e)

	ok(t, d.Close())
	copyDB(t, path+".copy", path) // the phone is restored: it takes a new replica id
	d = openPhone(t, path)
	testenv.Sync(t, d)
	if st := must[*syncer.Status](t)(d.Status()); !strings.Contains(st.Notice, "restored from an older copy") {
		t.Fatalf("notice %q: the phone's restore was not noticed", st.Notice)
	}

	e.Stop()
	copyDB(t, backup, db) // the server is restored: it knows the old replica id only
	e = restart(t, e)
	all = append(all, visits(t, d, "H002", "after both restores", 1)...)
	if _, err := d.Sync(ctx); err != nil {
		t.Fatalf("sync after the server's restore: %v; want the phone taken as the device", err)
	}
	for _, rid := range all {
		sameAsServer(t, e, d, rid)
	}
	if st := must[*syncer.Status](t)(d.Status()); st.Pending != 0 || st.Stopped != "" {
		t.Fatalf("phone after the server's restore: %d pending, stopped %q", st.Pending, st.Stopped)
	}
}
