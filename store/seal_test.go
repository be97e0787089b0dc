package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// secrets are what a replica holds that nobody without the key may read:
// a household's head and phone, a visit's text, a rejection's reason, the
// credential and the user's name.
var secrets = []string{"張大山", "13800000001", "屋頂漏水", "戶主不在此村", "tok-4f9a2c77e1", "張國華", "衝突：電話不同"}

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, store.KeySize)
	rand.Read(k)
	return k
}

// fillReplica writes every kind of value a replica seals: meta, a record
// with base, local and reason, a rejected mutation with its reason.
func fillReplica(t testing.TB, r *store.Replica) {
	t.Helper()
	hh := &pb.Record{Id: "H001", Kind: pb.Kind_KIND_HOUSEHOLD, Buckets: []string{"h:H001", "v:V1"},
		Fields: map[string]*pb.FieldValue{"head": {Value: "張大山"}, "phone": {Value: "13800000001"}}}
	err := r.Update(context.Background(), func(tx *store.RTx) error {
		for k, v := range map[string]string{"token": "tok-4f9a2c77e1", "user_name": "張國華", "next_seq": "2"} {
			if err := tx.SetMeta(k, v); err != nil {
				return err
			}
		}
		if err := tx.PutRecord(&store.LocalRecord{Base: hh, Local: hh, State: 3, Reason: "衝突：電話不同", UpdatedMs: 1}); err != nil {
			return err
		}
		if err := tx.AddOutbox(mutation(1, "屋頂漏水"), 1); err != nil {
			return err
		}
		return tx.RejectOutbox(1, "PERMISSION_DENIED", "household_id", "戶主不在此村")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkFilled reads back what fillReplica wrote.
func checkFilled(t testing.TB, r *store.Replica) {
	t.Helper()
	err := r.View(context.Background(), func(tx *store.RTx) error {
		if tok, err := tx.Meta("token"); err != nil || tok != "tok-4f9a2c77e1" {
			t.Errorf("token %q, %v", tok, err)
		}
		if n, err := tx.MetaInt("next_seq"); err != nil || n != 2 {
			t.Errorf("next_seq %d, %v", n, err)
		}
		lr, err := tx.Record("H001")
		if err != nil {
			return err
		}
		if got := lr.Local.GetFields()["head"].GetValue(); got != "張大山" || lr.Base.GetFields()["phone"].GetValue() != "13800000001" || lr.Reason != "衝突：電話不同" {
			t.Errorf("record H001: head %q, base %v, reason %q", got, lr.Base, lr.Reason)
		}
		all, err := tx.Records(pb.Kind_KIND_HOUSEHOLD)
		if err != nil || len(all) != 1 {
			t.Errorf("households: %d, %v", len(all), err)
		}
		rows, err := tx.Outbox(store.OutboxRejected, 10)
		if err != nil {
			return err
		}
		if len(rows) != 1 || rows[0].Reason != "戶主不在此村" || rows[0].Mutation.GetFields()["needs"] != "屋頂漏水" {
			t.Errorf("rejected outbox: %+v", rows)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fileBytes is the database file, its WAL and its shared-memory index.
func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func found(b []byte, texts []string) []string {
	var out []string
	for _, s := range texts {
		if bytes.Contains(b, []byte(s)) {
			out = append(out, s)
		}
	}
	return out
}

func openKey(t testing.TB, path string, key []byte) *store.Replica {
	t.Helper()
	r, err := store.OpenReplicaKey(context.Background(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// With a key nothing secret is in the file or its WAL, while open (before
// any checkpoint) and after close; without one, all of it is (so the
// search works).
func TestSealedReplicaHoldsNoClearText(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", newKey(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "device.db")
			r := openKey(t, path, tc.key)
			fillReplica(t, r)
			open := fileBytes(t, path)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			closed := fileBytes(t, path)
			for when, b := range map[string][]byte{"open": open, "closed": closed} {
				got := found(b, secrets)
				if tc.key == nil && len(got) != len(secrets) {
					t.Errorf("%s, plain: found only %q of %q: the search does not work", when, got, secrets)
				}
				if tc.key != nil && len(got) > 0 {
					t.Errorf("%s, sealed: the files hold %q in clear", when, got)
				}
			}
			r = openKey(t, path, tc.key)
			defer r.Close()
			checkFilled(t, r)
		})
	}
}

// An encrypted replica opens only with its key: no key and another key
// are ErrWrongKey, never an empty database; a key of the wrong size is
// refused saying the size wanted.
func TestSealedReplicaOpensOnlyWithItsKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	key := newKey(t)
	r := openKey(t, path, key)
	fillReplica(t, r)
	r.Close()
	for name, k := range map[string][]byte{"no key": nil, "another key": newKey(t)} {
		_, err := store.OpenReplicaKey(ctx, path, k)
		if !errors.Is(err, store.ErrWrongKey) {
			t.Errorf("%s: %v, want ErrWrongKey", name, err)
		}
	}
	_, err := store.OpenReplicaKey(ctx, path, key[:16])
	if err == nil || errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), "16 bytes; want 32") {
		t.Errorf("a 16-byte key: %v, want a size error", err)
	}
	r = openKey(t, path, key)
	defer r.Close()
	checkFilled(t, r)
	// A wipe (the device revoked) keeps it encrypted.
	if err := r.Update(ctx, func(tx *store.RTx) error { return tx.Wipe() }); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := store.OpenReplica(ctx, path); !errors.Is(err, store.ErrWrongKey) {
		t.Errorf("wiped, no key: %v, want ErrWrongKey", err)
	}
}

// A plain replica opened with a key is encrypted in place: afterwards no
// clear copy is left in the file or its WAL, everything reads back, and
// it no longer opens without the key.
func TestPlainReplicaIsEncryptedInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.db")
	r := openKey(t, path, nil)
	fillReplica(t, r)
	r.Close()
	if got := found(fileBytes(t, path), secrets); len(got) != len(secrets) {
		t.Fatalf("plain replica: found only %q: the search does not work", got)
	}
	key := newKey(t)
	r = openKey(t, path, key)
	if got := found(fileBytes(t, path), secrets); len(got) > 0 {
		t.Errorf("encrypted in place, still open: the files hold %q in clear", got)
	}
	checkFilled(t, r)
	r.Close()
	if got := found(fileBytes(t, path), secrets); len(got) > 0 {
		t.Errorf("encrypted in place, closed: the files hold %q in clear", got)
	}
	if _, err := store.OpenReplica(context.Background(), path); !errors.Is(err, store.ErrWrongKey) {
		t.Errorf("no key after encrypting: %v, want ErrWrongKey", err)
	}
	r = openKey(t, path, key)
	defer r.Close()
	checkFilled(t, r)
}

// A sealed value is bound to its place: copied into another row, it does
// not open (ErrSealBroken), so rows cannot be swapped by editing the file.
func TestSealedValueMovedToAnotherRowDoesNotOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	key := newKey(t)
	r := openKey(t, path, key)
	err := r.Update(ctx, func(tx *store.RTx) error {
		for _, id := range []string{"H001", "H002"} {
			rec := &pb.Record{Id: id, Kind: pb.Kind_KIND_HOUSEHOLD}
			if err := tx.PutRecord(&store.LocalRecord{Local: rec, UpdatedMs: 1}); err != nil {
				return err
			}
		}
		if err := tx.SetMeta("user_name", "張國華"); err != nil {
			return err
		}
		return tx.SetMeta("role", "member")
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	raw, err := store.OpenDB(ctx, path, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"UPDATE records SET local = (SELECT local FROM records WHERE id = 'H002') WHERE id = 'H001'",
		"UPDATE meta SET value = (SELECT value FROM meta WHERE key = 'user_name') WHERE key = 'role'",
	} {
		if _, err := raw.W.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	r = openKey(t, path, key)
	defer r.Close()
	err = r.View(ctx, func(tx *store.RTx) error {
		if _, err := tx.Record("H001"); !errors.Is(err, store.ErrSealBroken) {
			t.Errorf("H001 holding H002's value: %v, want ErrSealBroken", err)
		}
		if _, err := tx.Record("H002"); err != nil {
			t.Errorf("H002 untouched: %v", err)
		}
		if _, err := tx.Meta("role"); !errors.Is(err, store.ErrSealBroken) {
			t.Errorf("role holding user_name's value: %v, want ErrSealBroken", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The database is created 0600, and so are its WAL and shared-memory
// index (SQLite gives them the database's mode); a file others could read
// is narrowed to 0600 when opened.
func TestReplicaFilesAreTheOwnersOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device.db")
	r := openKey(t, path, newKey(t))
	fillReplica(t, r)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s while open: %v", filepath.Base(p), err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
	r.Close()

	old := filepath.Join(t.TempDir(), "old.db")
	r = openKey(t, old, nil)
	r.Close()
	if err := os.Chmod(old, 0o644); err != nil {
		t.Fatal(err)
	}
	r = openKey(t, old, nil)
	defer r.Close()
	if st, _ := os.Stat(old); st.Mode().Perm() != 0o600 {
		t.Errorf("an existing 0644 replica: mode %v after open, want 0600", st.Mode().Perm())
	}
}

// Renumbering and rewriting pending mutations re-seal each body for its
// new place.
func TestSealedOutboxRenumbers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	r := openKey(t, path, newKey(t))
	defer r.Close()
	err := r.Update(ctx, func(tx *store.RTx) error {
		for seq := uint64(5); seq <= 7; seq++ {
			if err := tx.AddOutbox(mutation(seq, "屋頂漏水"), 1); err != nil {
				return err
			}
		}
		if _, err := tx.Renumber(1); err != nil {
			return err
		}
		return tx.RewritePending(func(m *pb.Mutation) bool { m.Fields["help"] = "改過"; return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	got := outbox(t, r)
	if len(got) != 3 || got[2] != store.OutboxPending || got[4] != store.OutboxPending {
		t.Errorf("after renumbering from 1: %v, want 2, 3, 4 pending", got)
	}
}
