package fieldsync

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Foreground mode hears the server's poke: the secretary's edit of a
// household the member holds reaches the member's phone without the app
// calling SyncOnce (its interval is an hour, so only the poke can bring
// it), and the listener hears of it; a local write in foreground mode is
// sent by itself; StopForeground ends it; a revoked phone's foreground
// mode ends by itself with the code.
func TestForegroundHearsAPoke(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := phoneWith(t, e, testenv.Member, `{"foreground_interval_ms":3600000,"connect_timeout_ms":1000}`)
	sec := phone(t, e, testenv.Secretary)
	syncOnce(t, sec)
	rec := &recorder{t: t}
	member.SetListener(rec)
	ok(t, member.StartForeground())
	ok(t, member.StartForeground()) // twice does nothing
	// The first foreground sync brings the member's households.
	waitFor(t, 10*time.Second, "the first foreground sync", func() bool {
		_, err := member.Get("H001")
		return err == nil
	})
	if st := status(t, member); !st.Foreground {
		t.Fatalf("status %+v: want foreground", st)
	}
	heard := func() int {
		n := 0
		changes, _ := rec.snapshot()
		for _, c := range changes {
			if c.Source == "sync" && c.Report != nil && c.Report.Pulled > 0 {
				n++
			}
		}
		return n
	}
	heardBefore := heard()

	// The poke stream opens a moment after the first sync: an edit made
	// before it is up is not poked (the server pokes only the streams it
	// holds), so the secretary edits again every 300 ms until one arrives.
	var wrote time.Time
	n := 0
	waitFor(t, 15*time.Second, "the secretary's edit on the member's phone, by a poke", func() bool {
		if h, err := member.Get("H001"); err == nil && strings.HasPrefix(decode[schema.Record](t, h).Fields["tags"], "低保戶") {
			return true
		}
		if time.Since(wrote) > 300*time.Millisecond {
			n++
			ok(t, sec.Update("H001", fmt.Sprintf(`{"tags":"低保戶 %d"}`, n)))
			syncOnce(t, sec)
			wrote = time.Now()
		}
		return false
	})
	waitFor(t, 5*time.Second, "the listener told of the sync", func() bool { return heard() > heardBefore })

	// A local write is sent by itself.
	visit := must[string](t)(member.RecordVisit("H001", time.Now().Format("2006-01-02"), "張大山", "", "", ""))
	waitFor(t, 10*time.Second, "the visit sent by foreground mode", func() bool {
		return get(t, member, visit).State == "synced"
	})

	member.StopForeground()
	if st := status(t, member); st.Foreground || st.Syncing {
		t.Fatalf("status after StopForeground: %+v", st)
	}
	member.StopForeground() // twice does nothing

	// Revoked while in foreground mode: its next sync (woken by a local
	// write) meets the revocation, and the mode ends by itself.
	before := status(t, member).LastSyncMs
	ok(t, member.StartForeground())
	waitFor(t, 10*time.Second, "foreground mode's first sync", func() bool {
		st := status(t, member)
		return st.Foreground && !st.Syncing && st.LastSyncMs > before
	})
	admin, ctx := e.Admin()
	if _, err := admin.RevokeDevice(ctx, &pb.RevokeDeviceRequest{DeviceId: status(t, member).Identity.DeviceID}); err != nil {
		t.Fatal(err)
	}
	must[string](t)(member.RecordVisit("H001", time.Now().Format("2006-01-02"), "last", "", "", ""))
	waitFor(t, 10*time.Second, "foreground mode to end on the revocation", func() bool {
		st := status(t, member)
		return !st.Foreground && !st.Enrolled
	})
	// The wipe is a data change the app hears (its lists are now empty).
	// (Foreground mode's calls come on a goroutine of their own: wait.)
	waitFor(t, 5*time.Second, "the wipe heard as a change", func() bool {
		changes, _ := rec.snapshot()
		last := changes[len(changes)-1]
		return last.Source == "sync" && last.Report != nil && last.Report.Changed && last.Report.Pushed == 0
	})
}

// closer is a listener that closes its client on the first sync it hears
// (an app that shuts down from its callback).
type closer struct {
	c      *Client
	once   atomic.Bool
	closed chan error
}

func (l *closer) OnDataChanged(string) {}
func (l *closer) OnSyncState(statusJSON string) {
	// Close calls the listener too (the state after it): once only.
	if l.once.CompareAndSwap(false, true) {
		l.closed <- l.c.Close()
	}
}

// A listener may call Close (or StopForeground) from a foreground sync's
// callback: it returns, and the foreground goroutine ends, instead of
// each waiting for the other.
func TestForegroundListenerMayClose(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := phone(t, e, testenv.Member)
	l := &closer{c: member, closed: make(chan error, 1)}
	member.SetListener(l)
	ok(t, member.StartForeground())
	select {
	case err := <-l.closed:
		ok(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close called from the listener did not return")
	}
	_, err := member.Status()
	wantCode(t, "a call after Close", err, CodeClosed)
}
