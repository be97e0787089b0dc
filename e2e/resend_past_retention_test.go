package e2e

import (
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// A phone keeps acknowledged work for a retention period only. A server
// restored from a backup older than that lost work the phone no longer
// keeps: the phone cannot send it again, and its notice says how much was
// lost and to tell the operator, never "nothing was lost".
func TestServerRestoredPastRetentionSaysWhatIsLost(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	var ahead atomic.Int64 // how far the phone's clock is moved on
	m1 := e.Device(testenv.Member, func(o *syncer.Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	testenv.Sync(t, m1)

	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyDB(t, db, backup)
	e = restart(t, e)
	visits(t, m1, "H001", "after the backup", 3)
	testenv.Sync(t, m1)
	// 31 days on, the phone trims what it keeps.
	ahead.Store(int64(31 * 24 * time.Hour))
	testenv.Sync(t, m1)
	if st := must[*syncer.Status](t)(m1.Status()); st.Acked != 0 {
		t.Fatalf("31 days after they were acknowledged the phone still keeps %d mutations; the test needs them trimmed", st.Acked)
	}

	e.Stop()
	copyDB(t, backup, db) // the server is restored from the backup
	e = restart(t, e)
	testenv.Sync(t, m1)
	st := must[*syncer.Status](t)(m1.Status())
	if strings.Contains(st.Notice, "nothing was lost") || !strings.Contains(st.Notice, "3 ") {
		t.Fatalf("the server lost 3 of this phone's changes it no longer keeps; its notice says %q", st.Notice)
	}
}
