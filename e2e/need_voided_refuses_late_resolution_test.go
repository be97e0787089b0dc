package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// A member raises a need of no one household (a street lamp), which lies
// with them; the village secretary refers it to the town with a reason.
// The lamp is mended anyway and the member voids the need, while the
// secretary, offline, marks it resolved. The void reached the server
// first: the resolution is refused with code "voided" and kept on the
// secretary's phone, and both phones hold the voided need as the server
// does, its history ending at referred.
func TestNeedVoidedByMemberRefusesLateResolution(t *testing.T) {
	w := openWindow()
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	syncAll(t, member, sec)
	need := must[string](t)(member.Create("need", syncer.NewFields().Set("category", "infrastructure").
		Set("summary", "村口路燈壞了")))
	syncAll(t, member, sec)
	ok(t, sec.TransitionWith(need, "referred", syncer.NewFields().Set("referral_reason", "路燈歸鎮上統一維修")))
	syncAll(t, member, sec)
	if it := must[*syncer.Item](t)(member.Get(need)); it.Field("status") != "referred" || it.Field("referral_reason") != "路燈歸鎮上統一維修" {
		t.Fatalf("member's phone shows the need %q (%q), want referred with the reason", it.Field("status"), it.Field("referral_reason"))
	}

	ok(t, member.Void(need, "已經修好了，不用再辦"))
	ok(t, sec.TransitionWith(need, "resolved", syncer.NewFields().Set("resolution", "鎮上派人修好")))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	syncAll(t, member, sec)
	w.close()
	noRejections(t, "the member", member)

	n := serverRecord(t, e, need)
	if v := n.GetVoid(); v == nil || v.GetAuthorId() != testenv.Member || v.GetAtMs() < w.from || v.GetAtMs() > w.to {
		t.Fatalf("server's need: void %v, want the member's, stamped inside the test", v)
	}
	if r := rejection(t, sec, need, "transition"); r.Code != domain.CodeVoided {
		t.Errorf("the late resolution was refused with %q (%s), want %q", r.Code, r.Reason, domain.CodeVoided)
	}
	checkHistory(t, n, w,
		move{"", "raised", testenv.Member},
		move{"raised", "referred", testenv.Secretary})
	sameAsServer(t, e, member, need)
	sameAsServer(t, e, sec, need)
}
