package fieldsync

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
)

// newKey is a random 32-byte key, as the Keystore or Keychain would keep.
func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeyBytes)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// phone opens a client on a new encrypted database and enrolls it for
// userID through the SDK, with the code as a scanner gives it.
func phone(t testing.TB, e *testenv.Env, userID string) *Client {
	t.Helper()
	return phoneWith(t, e, userID, `{"app_version":"sdk-test/1","connect_timeout_ms":1000}`)
}

// phoneWith is phone with Open's options.
func phoneWith(t testing.TB, e *testenv.Env, userID, optionsJSON string) *Client {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "phone.db"), newKey(t), optionsJSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Enroll(e.Code(userID), "手機 "+userID, 10000); err != nil {
		t.Fatalf("enroll %s: %v", userID, err)
	}
	return c
}

// openClient opens a client, closed when the test ends.
func openClient(t testing.TB, path string, key []byte) *Client {
	t.Helper()
	c, err := Open(path, key, `{"app_version":"sdk-test/1","connect_timeout_ms":1000}`)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// decode parses s into a T, refusing names the documented struct lacks:
// the JSON shapes are exactly schema's.
func decode[T any](t testing.TB, s string) T {
	t.Helper()
	var v T
	if err := strictJSON(s, &v); err != nil {
		t.Fatalf("%s does not parse into %T: %v", s, v, err)
	}
	return v
}

// strictJSON parses s into v, refusing unknown names.
func strictJSON(s string, v any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// ok fails the test on err.
func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// must returns v, failing the test on err.
func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// syncOnce syncs and returns the report, failing the test on error.
func syncOnce(t testing.TB, c *Client) schema.Report {
	t.Helper()
	s, err := c.SyncOnce(20000)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return decode[schema.Report](t, s)
}

// get returns a record, failing the test on error.
func get(t testing.TB, c *Client, id string) schema.Record {
	t.Helper()
	return decode[schema.Record](t, must[string](t)(c.Get(id)))
}

// status returns the client's status.
func status(t testing.TB, c *Client) schema.Status {
	t.Helper()
	return decode[schema.Status](t, must[string](t)(c.Status()))
}

// wantCode checks that err's message starts with code.
func wantCode(t testing.TB, what string, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s", what, code)
	}
	if got := ErrorCode(err.Error()); got != code {
		t.Fatalf("%s: code %q (%v), want %q", what, got, err, code)
	}
}

// recorder is a Listener that keeps what it was told.
type recorder struct {
	mu      sync.Mutex
	changes []schema.Change
	states  []schema.Status
	t       testing.TB
}

// The listener is called on other goroutines too (foreground mode): it
// reports a bad shape with Errorf, not Fatalf.

func (r *recorder) OnDataChanged(changeJSON string) {
	var ch schema.Change
	if err := strictJSON(changeJSON, &ch); err != nil {
		r.t.Errorf("OnDataChanged(%s): %v", changeJSON, err)
	}
	r.mu.Lock()
	r.changes = append(r.changes, ch)
	r.mu.Unlock()
}

func (r *recorder) OnSyncState(statusJSON string) {
	var st schema.Status
	if err := strictJSON(statusJSON, &st); err != nil {
		r.t.Errorf("OnSyncState(%s): %v", statusJSON, err)
	}
	r.mu.Lock()
	r.states = append(r.states, st)
	r.mu.Unlock()
}

// snapshot returns copies of what the recorder heard.
func (r *recorder) snapshot() ([]schema.Change, []schema.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]schema.Change(nil), r.changes...), append([]schema.Status(nil), r.states...)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}
