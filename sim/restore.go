package sim

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Going back in time: the server restored from a backup some steps old,
// and a phone restored from an older copy of its database. Each loses what
// was written after its copy, except what the other side still holds: the
// devices send again the acknowledged work they keep, and a restored
// phone's work that reached the server stays there. After each such fault
// reconcile sets the device's bookkeeping to what must survive, from what
// the server and the device hold at that moment.

// serverSnap is a consistent copy of the server's database (VACUUM INTO
// through a read connection, the server serving), taken at a step.
type serverSnap struct {
	step int
	path string
	last uint64 // its last change number
}

// keptSnaps is how many backups the simulation keeps.
const keptSnaps = 4

func (w *World) serverDB() string { return filepath.Join(w.env.Dir, "fieldsync.db") }

// readDB opens a read-only connection to a SQLite file.
func (w *World) readDB(path string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		w.t.Fatalf("seed %d: open %s: %v", w.cfg.Seed, path, err)
	}
	return db
}

// snapshotServer takes a backup of the server's database as it serves.
func (w *World) snapshotServer() {
	path := filepath.Join(w.snapDir, fmt.Sprintf("server-%d.db", w.stats.Steps))
	db := w.readDB(w.serverDB())
	_, err := db.Exec("VACUUM INTO ?", path)
	db.Close()
	if err != nil {
		w.t.Fatalf("seed %d: back up the server: %v", w.cfg.Seed, err)
	}
	snap := w.readDB(path)
	var last sql.NullInt64
	err = snap.QueryRow("SELECT MAX(seq) FROM changes").Scan(&last)
	snap.Close()
	if err != nil {
		w.t.Fatalf("seed %d: read the backup: %v", w.cfg.Seed, err)
	}
	w.snaps = append(w.snaps, serverSnap{step: w.stats.Steps, path: path, last: uint64(last.Int64)})
	if len(w.snaps) > keptSnaps {
		os.Remove(w.snaps[0].path)
		w.snaps = w.snaps[1:]
	}
}

// dropSnaps forgets the backups: an org change (a reassignment, a grid
// move, a revocation) was made after them, which an operator restoring
// one would have to make again; the model does not go there.
func (w *World) dropSnaps() {
	for _, s := range w.snaps {
		os.Remove(s.path)
	}
	w.snaps = nil
}

// restoreServer stops the server, puts back a backup N steps old and
// starts it again on the same directory, address and token. Half the time
// the database is rebased first, as `syncd restore` does; otherwise the
// relay's check at start must find the stream ahead and rebase it.
func (w *World) restoreServer() {
	if len(w.snaps) == 0 {
		return
	}
	i := w.rng.IntN(len(w.snaps))
	s := w.snaps[i]
	for _, later := range w.snaps[i+1:] { // backups of a history that is gone
		os.Remove(later.path)
	}
	w.snaps = w.snaps[:i+1]
	w.stats.ServerRestores++
	w.lastRestore = w.stats.Steps
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := w.env
	lastBefore, err := e.Store.LastSeq(ctx)
	if err != nil {
		w.t.Fatalf("seed %d: last change: %v", w.cfg.Seed, err)
	}
	// A server that ran a while had published its changes: the stream is
	// ahead of the backup, which the relay's check must notice.
	if err := e.Server.Relay().WaitPublished(ctx, lastBefore); err != nil {
		w.t.Fatalf("seed %d: relay: %v", w.cfg.Seed, err)
	}
	lineage := e.Store.Instance()
	rebase := w.rng.IntN(2) == 0
	w.cfg.Log("step %d: server restored from the backup of step %d (%d steps old; changes %d -> %d; rebased by restore: %v)",
		w.stats.Steps, s.step, w.stats.Steps-s.step, lastBefore, s.last, rebase)
	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(db + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.t.Fatal(err)
		}
	}
	copyFile(w.t, s.path, db)
	if rebase {
		st, err := store.OpenServer(ctx, db)
		if err != nil {
			w.t.Fatalf("seed %d: open the restored database: %v", w.cfg.Seed, err)
		}
		if _, err := st.Rebase(ctx); err != nil {
			w.t.Fatalf("seed %d: rebase the restored database: %v", w.cfg.Seed, err)
		}
		if err := st.Close(); err != nil {
			w.t.Fatal(err)
		}
	}
	// The server's connections die with it: no request held in the
	// network arrives after the restore.
	for _, v := range w.devs {
		v.net.late = nil
	}
	w.env = testenv.Start(w.t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken))
	if lastBefore > s.last && w.env.Store.Instance() == lineage {
		w.t.Errorf("seed %d: the server went back from change %d to %d and still numbers its changes in lineage %s: change ids would name two contents",
			w.cfg.Seed, lastBefore, s.last, lineage)
	}
	for _, v := range w.devs {
		if !v.revoked {
			w.reconcile(v)
		}
	}
}

// copyPhone copies a device's database file, as a backup of the phone.
func (w *World) copyPhone(v *device) {
	if v.restored {
		return // see doc.go: a copy of a restored phone before it synced is a clone's
	}
	w.stats.PhoneCopies++
	w.cfg.Log("step %d: %s's database copied", w.stats.Steps, v.user)
	w.closeDevice(v)
	copyDB(w.t, v.path, v.path+".copy")
	v.hasCopy = true
	v.open()
}

// restorePhone puts a device's older copy back, as a user restoring a
// phone does: what was written after the copy and never reached the
// server is gone, inherently.
func (w *World) restorePhone() {
	var cands []*device
	for _, v := range w.devs {
		if v.hasCopy && !v.revoked {
			cands = append(cands, v)
		}
	}
	if len(cands) == 0 {
		return
	}
	v := cands[w.rng.IntN(len(cands))]
	w.stats.PhoneRestores++
	w.lastRestore = w.stats.Steps
	w.cfg.Log("step %d: %s restored from its older copy", w.stats.Steps, v.user)
	w.closeDevice(v)
	copyDB(w.t, v.path+".copy", v.path)
	// Once: the same copy put back a second time is, to the server, a
	// second phone running it beside the first restored one (which took a
	// new replica id): a clone, stopped until enrolled again, as designed.
	v.hasCopy, v.restored = false, true
	// The old phone's requests still in the network go with it, and the
	// app starts afresh.
	v.net.late, v.crashAt = nil, ""
	v.open()
	w.reconcile(v)
}

func (w *World) closeDevice(v *device) {
	if err := v.d.Close(); err != nil {
		w.t.Fatalf("seed %d: close device %s: %v", w.cfg.Seed, v.user, err)
	}
}

// reconcile sets v's bookkeeping after the server or v went back in time:
// the server keeps what it answered (1..last); the device sends again its
// pending mutations and what it holds past last, each of which lands once
// unless the server already holds the same content. So v.queued, what the
// server must have numbered for v at the end, is last plus those; an
// appended note must end on the server (or rejected) if the server holds
// it now or the device will send it (or keeps its rejection); a
// concurrent edit neither holds is lost and is not checked.
func (w *World) reconcile(v *device) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t, seed := w.t, w.cfg.Seed
	id, err := v.d.Identity()
	if err != nil {
		t.Fatalf("seed %d: identity: %v", seed, err)
	}
	last, hashes := w.answered(id.DeviceID)

	w.closeDevice(v)
	rep, err := store.OpenReplicaKey(ctx, v.path, v.key)
	if err != nil {
		t.Fatalf("seed %d: open %s's database: %v", seed, v.user, err)
	}
	var rows []store.OutboxRow
	err = rep.View(ctx, func(tx *store.RTx) error {
		for _, status := range []int{store.OutboxPending, store.OutboxRejected, store.OutboxAcked} {
			r, err := tx.Outbox(status, 1<<30)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		return nil
	})
	rep.Close()
	if err != nil {
		t.Fatalf("seed %d: read %s's outbox: %v", seed, v.user, err)
	}
	v.open()

	sends, held := 0, map[string]bool{} // held: appended texts and edited values the device sends or keeps as rejected
	for _, r := range rows {
		send := r.Status == store.OutboxPending || r.Mutation.GetSeq() > last
		if send && !holds(r.Mutation, last, hashes) {
			sends++
		}
		if send || r.Status == store.OutboxRejected {
			for _, val := range r.Mutation.GetFields() {
				held[val] = true
			}
		}
	}
	before := v.queued
	v.queued = int(last) + sends
	w.cfg.Log("  %s: the server answered %d; the device sends %d more (queued %d -> %d)", v.user, last, sends, before, v.queued)

	for rec, texts := range v.appends {
		srv, err := w.env.Store.Record(ctx, rec)
		on := map[string]bool{}
		if err == nil {
			for _, en := range srv.GetEntries() {
				on[en.GetText()] = true
			}
		}
		var kept []string
		for _, text := range texts {
			if on[text] || held[text] {
				kept = append(kept, text)
			}
		}
		v.appends[rec] = kept
	}
	// A void must stand at the end if the server holds one now or the
	// device will send (or keeps the refusal of) its own.
	for rec, reason := range v.voids {
		if held[reason] {
			continue
		}
		if srv, err := w.env.Store.Record(ctx, rec); err == nil && srv.GetVoid() != nil {
			continue
		}
		w.cfg.Log("  %s's void of %s went back in time: not checked", v.user, rec)
		delete(v.voids, rec)
	}
	for key, by := range w.frozenBy {
		for side, d := range by {
			if d != v {
				continue
			}
			rec, field, _ := strings.Cut(key, "/")
			val := strings.Split(w.frozen[key], "|")[side]
			if held[val] {
				continue
			}
			srv, err := w.env.Store.Record(ctx, rec)
			if err == nil && srv.GetFields()[field].GetValue() == val {
				continue
			}
			found := false
			for _, c := range srv.GetConflicts() {
				found = found || (c.GetField() == field && c.GetValue() == val)
			}
			if !found {
				w.cfg.Log("  %s's concurrent edit %s = %q went back in time: not checked", v.user, key, val)
				w.frozenLost[key] = true
			}
		}
	}
}

// answered returns the server's last mutation number for a device and the
// content hash it keeps of each answered number.
func (w *World) answered(deviceID string) (uint64, map[uint64][]byte) {
	db := w.readDB(w.serverDB())
	defer db.Close()
	var last uint64
	if err := db.QueryRow("SELECT last_seq FROM devices WHERE id = ?", deviceID).Scan(&last); err != nil {
		w.t.Fatalf("seed %d: device %s on the server: %v", w.cfg.Seed, deviceID, err)
	}
	rows, err := db.Query("SELECT seq, hash FROM mutation_results WHERE device_id = ?", deviceID)
	if err != nil {
		w.t.Fatalf("seed %d: mutation results: %v", w.cfg.Seed, err)
	}
	defer rows.Close()
	hashes := map[uint64][]byte{}
	for rows.Next() {
		var seq uint64
		var h []byte
		if err := rows.Scan(&seq, &h); err != nil {
			w.t.Fatal(err)
		}
		hashes[seq] = h
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return last, hashes
}

// holds reports whether the server answered m's content under some number
// up to last (its own first: a retry).
func holds(m *pb.Mutation, last uint64, hashes map[uint64][]byte) bool {
	c := proto.Clone(m).(*pb.Mutation)
	try := func(seq uint64) bool {
		if seq == 0 || seq > last || hashes[seq] == nil {
			return false
		}
		c.Seq = seq
		h, err := store.MutationHash(c)
		return err == nil && bytes.Equal(h, hashes[seq])
	}
	if try(m.GetSeq()) {
		return true
	}
	for seq := uint64(1); seq <= last; seq++ {
		if seq != m.GetSeq() && try(seq) {
			return true
		}
	}
	return false
}

// copyDB copies a closed SQLite database and its write-ahead log, if one
// was left, over dst's.
func copyDB(t testing.TB, src, dst string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(dst + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if _, err := os.Stat(src + suffix); errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		copyFile(t, src+suffix, dst+suffix)
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
