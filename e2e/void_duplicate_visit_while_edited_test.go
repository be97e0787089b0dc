package e2e

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// A visit entered twice is voided on one phone while another phone, not
// yet knowing, amends the duplicate. Whichever reaches the server first,
// every phone and the server end with the same record, voided; the
// amendment either landed before the void (its text is in the record) or
// came after it and was refused with code "voided", kept on the phone
// that made it: nothing is lost without a word. The duplicate counts
// nowhere: not in HQ's export of live visits, and the changelog's last
// word on it is the void.
func TestVoidDuplicateVisitWhileAnotherPhoneEditsIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		// voider is the user whose phone voids; the author's second phone
		// (or the secretary's, when voider is the secretary) edits.
		voider    string
		voidFirst bool
	}{
		{"author's two phones, void reaches the server first", testenv.Member, true},
		{"author's two phones, edit reaches the server first", testenv.Member, false},
		{"secretary voids while the author edits, void first", testenv.Secretary, true},
		{"secretary voids while the author edits, edit first", testenv.Secretary, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openWindow()
			e := testenv.Start(t)
			e.ImportSample()
			author := e.Device(testenv.Member)
			voider, editor := e.Device(tc.voider), author
			if tc.voider == testenv.Member {
				editor = e.Device(testenv.Member) // the member's second phone
			}
			hq := e.Device(testenv.HQ)
			all := []*syncer.Device{author, voider, editor, hq}
			fields := syncer.NewFields().Set("household_id", "H003").Set("visited_on", "2026-11-19").
				Set("met", "趙春梅").Set("needs", "低保複審材料")
			orig := must[string](t)(author.Create("visit", fields))
			dup := must[string](t)(author.Create("visit", fields))
			syncAll(t, all...)

			// Both phones work without syncing.
			ok(t, voider.Void(dup, "重複錄入"))
			if it := must[*syncer.Item](t)(voider.Get(dup)); it.Record.GetVoid() == nil || it.State != "pending" {
				t.Fatalf("voiding phone shows %s void=%v, want pending and void", it.State, it.Record.GetVoid())
			}
			ok(t, editor.Update(dup, syncer.NewFields().Set("follow_up", "下週送材料到鎮上")))
			if tc.voidFirst {
				testenv.Sync(t, voider)
				testenv.Sync(t, editor)
			} else {
				testenv.Sync(t, editor)
				testenv.Sync(t, voider)
			}
			syncAll(t, all...)
			w.close()
			noRejections(t, "the voiding phone", voider)

			v := serverRecord(t, e, dup)
			vd := v.GetVoid()
			if vd == nil || vd.GetReason() != "重複錄入" || vd.GetAuthorId() != tc.voider || vd.GetAtMs() < w.from || vd.GetAtMs() > w.to {
				t.Fatalf("server's duplicate: void %v; want reason 重複錄入 by %s, stamped inside [%d, %d]", vd, tc.voider, w.from, w.to)
			}
			// The amendment: landed before the void, or refused as voided
			// and kept on the editing phone.
			if tc.voidFirst {
				if got := v.GetFields()["follow_up"].GetValue(); got != "" {
					t.Errorf("an edit made to a voided visit changed it: follow_up %q", got)
				}
				r := rejection(t, editor, dup, "update")
				if r.Code != domain.CodeVoided {
					t.Errorf("edit after the void refused with %q (%s), want %q", r.Code, r.Reason, domain.CodeVoided)
				}
			} else {
				if got := v.GetFields()["follow_up"].GetValue(); got != "下週送材料到鎮上" {
					t.Errorf("the edit that reached the server before the void is lost: follow_up %q", got)
				}
				if rs := must[[]*syncer.Rejection](t)(editor.Rejections()); len(rs) != 0 {
					t.Errorf("editing phone holds rejections %+v, want none", rs)
				}
			}
			for _, d := range all {
				sameAsServer(t, e, d, dup)
				sameAsServer(t, e, d, orig)
				if st := must[*syncer.Status](t)(d.Status()); st.Pending != 0 {
					t.Errorf("a phone still has %d pending", st.Pending)
				}
			}

			// Counts nowhere: HQ's export holds both visits (the void is
			// kept), and one live visit of H003.
			var live, voided int
			for _, r := range export(t, e) {
				if r.GetKind() != pb.Kind_KIND_VISIT || r.GetFields()["household_id"].GetValue() != "H003" {
					continue
				}
				if r.GetVoid() != nil {
					voided++
				} else {
					live++
				}
			}
			if live != 1 || voided != 1 {
				t.Errorf("export: %d live and %d voided visits of H003, want 1 and 1", live, voided)
			}
			// The changelog carries the void, and its last change of the
			// duplicate is the server's state.
			var last *pb.Record
			for _, c := range waitStream(t, e) {
				if c.GetRecord().GetId() == dup {
					last = c.GetRecord()
				}
			}
			if !proto.Equal(last, v) {
				t.Errorf("changelog's last change of the duplicate:\n%v\nserver:\n%v", last, v)
			}
		})
	}
}
