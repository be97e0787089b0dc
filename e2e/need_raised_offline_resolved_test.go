package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// 有困難找支部: a member hears of a household's difficulty on a visit made
// with the server out of reach and raises a need from it; the village
// secretary takes it up (with the help given) and resolves it. After a
// sync the member's phone shows it resolved, with who took it up, and the
// history says raised -> taken -> resolved, each step by its author at the
// server's time.
func TestNeedRaisedOfflineTakenUpAndResolvedShowsOnMembersPhone(t *testing.T) {
	w := openWindow()
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	syncAll(t, member, sec)

	// The server is out of reach: the member visits and raises the need.
	e.Stop()
	visit := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H001").
		Set("visited_on", "2026-11-20").Set("met", "張大山").Set("needs", "屋頂漏水，需要修繕")))
	need := must[string](t)(member.Create("need", syncer.NewFields().Set("village_id", testenv.Village).
		Set("household_id", "H001").Set("visit_id", visit).Set("category", "housing").
		Set("summary", "屋頂漏水").Set("detail", "雨季前需要修繕，戶主年老無力自修")))
	it := must[*syncer.Item](t)(member.Get(need))
	if it.State != "pending" || it.Field("status") != "raised" {
		t.Fatalf("offline need is %s, status %q; want pending, raised", it.State, it.Field("status"))
	}
	if h := it.Record.GetHistory(); len(h) != 1 || h[0].GetAtMs() != 0 {
		t.Errorf("offline need's history %v: want the creation alone, not yet stamped (at_ms 0)", h)
	}

	e = restart(t, e)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	noRejections(t, "the member", member)
	if _, err := sec.Get(need); err != nil {
		t.Fatalf("the village secretary does not see the member's need: %v", err)
	}
	ok(t, sec.TransitionWith(need, "taken", syncer.NewFields().Set("help", "聯繫鎮民政辦申請危房補助")))
	testenv.Sync(t, sec)
	ok(t, sec.TransitionWith(need, "resolved", syncer.NewFields().Set("resolution", "補助到位，屋頂已修好")))
	testenv.Sync(t, sec)
	testenv.Sync(t, member)
	w.close()
	noRejections(t, "the secretary", sec)

	n := serverRecord(t, e, need)
	for field, want := range map[string]string{
		"status": "resolved", "taken_by": testenv.Secretary, "help": "聯繫鎮民政辦申請危房補助",
		"resolution": "補助到位，屋頂已修好", "household_id": "H001", "visit_id": visit, "summary": "屋頂漏水",
	} {
		if got := n.GetFields()[field].GetValue(); got != want {
			t.Errorf("need.%s = %q, want %q", field, got, want)
		}
	}
	if n.GetAuthorId() != testenv.Member {
		t.Errorf("need's author %q, want the member %s", n.GetAuthorId(), testenv.Member)
	}
	checkHistory(t, n, w,
		move{"", "raised", testenv.Member},
		move{"raised", "taken", testenv.Secretary},
		move{"taken", "resolved", testenv.Secretary})

	// The member's phone shows the outcome: the server's record exactly.
	for _, d := range []*syncer.Device{member, sec} {
		sameAsServer(t, e, d, need)
		sameAsServer(t, e, d, visit)
	}
	if it := must[*syncer.Item](t)(member.Get(need)); it.State != "synced" || it.Field("status") != "resolved" {
		t.Errorf("member's phone shows the need %s, status %q; want synced, resolved", it.State, it.Field("status"))
	}
}
