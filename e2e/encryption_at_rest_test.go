package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// A phone's replica opened with a key holds no personal data and no
// credential in clear, in the database file or its WAL: not while the app
// runs (the WAL not yet checkpointed), not after it closed. The same run
// without a key finds every one of them, so the search works. The key
// check refuses another key and no key with syncer.ErrWrongKey; the files
// are the owner's only (0600). A plain replica opened with a key is
// encrypted in place.
func TestReplicaIsUnreadableWithoutItsKey(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	visitText := "屋頂漏水，冬天要棉被兩床"
	newPhone := "13912345678"
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", randomKey()}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "phone.db")
			d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: tc.key}))
			defer func() { d.Close() }()
			enrollCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ok(t, d.Enroll(enrollCtx, e.Code(testenv.Member), "張國華的手機"))
			testenv.Sync(t, d) // the member's households come down
			visit := must[string](t)(d.Create("visit", syncer.NewFields().Set("household_id", "H003").Set("visited_on", "2026-11-22").
				Set("needs", visitText)))
			ok(t, d.Update("H002", syncer.NewFields().Set("phone", newPhone)))
			testenv.Sync(t, d)

			// The credential, read through the store as the device does.
			r := must[*store.Replica](t)(store.OpenReplicaKey(ctx, path, tc.key))
			var token string
			ok(t, r.View(ctx, func(tx *store.RTx) error {
				var err error
				token, err = tx.Meta("token")
				return err
			}))
			ok(t, r.Close())
			if len(token) < 16 {
				t.Fatalf("token %q: too short to search for", token)
			}
			// Household heads and addresses (imported), phone numbers (the
			// import's and the member's edit), the visit's text, the
			// user's name, the credential.
			secrets := []string{"張大山", "趙春梅", "張家塆1號", "13800000001", newPhone, visitText, "張國華", token}

			wal, err := os.Stat(path + "-wal")
			ok(t, err)
			if wal.Size() == 0 {
				t.Fatal("the WAL is empty while the device is open: the search before a checkpoint would prove nothing")
			}
			search := func(when string) {
				t.Helper()
				var all []byte
				for _, b := range dbFiles(t, path) {
					all = append(all, b...)
				}
				var found []string
				for _, s := range secrets {
					if bytes.Contains(all, []byte(s)) {
						found = append(found, s)
					}
				}
				switch {
				case tc.key == nil && len(found) != len(secrets):
					t.Errorf("%s, plain: found only %q of %q: the search does not work", when, found, secrets)
				case tc.key != nil && len(found) > 0:
					t.Errorf("%s, encrypted: the replica's files hold %q in clear", when, found)
				}
			}
			search("open, before any checkpoint")
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				st, err := os.Stat(p)
				ok(t, err)
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
				}
			}
			ok(t, d.Close())
			search("closed")
			if tc.key == nil {
				// The app turns encryption on: the plain replica, given a
				// key, is encrypted in place, and no clear copy is left.
				key := randomKey()
				d = must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: key}))
				testenv.Sync(t, d)
				if got := must[*syncer.Item](t)(d.Get(visit)).Field("needs"); got != visitText {
					t.Errorf("encrypted in place: the visit's needs %q, want %q", got, visitText)
				}
				ok(t, d.Close())
				tc.key = key
				search("encrypted in place, closed")
				if _, err := syncer.OpenWith(path, &syncer.Options{}); !errors.Is(err, syncer.ErrWrongKey) {
					t.Errorf("encrypted in place, opened with no key: %v, want ErrWrongKey", err)
				}
				return
			}

			for name, k := range map[string][]byte{"no key": nil, "another key": randomKey()} {
				_, err := syncer.OpenWith(path, &syncer.Options{Key: k})
				if !errors.Is(err, syncer.ErrWrongKey) || !errors.Is(err, store.ErrWrongKey) {
					t.Errorf("open with %s: %v, want syncer.ErrWrongKey wrapping store.ErrWrongKey", name, err)
				}
			}
			d = must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: tc.key}))
			if got := must[*syncer.Item](t)(d.Get(visit)).Field("needs"); got != visitText {
				t.Errorf("reopened with its key: the visit's needs %q, want %q", got, visitText)
			}
			if got := must[*syncer.Item](t)(d.Get("H002")).Field("phone"); got != newPhone {
				t.Errorf("reopened with its key: H002's phone %q, want %q", got, newPhone)
			}
			testenv.Sync(t, d) // the credential still works
		})
	}
}

func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}
