package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// Chinese text goes from a phone through the server to another phone, the
// HQ export and the changelog, byte for byte: traditional and simplified
// characters, a character outside the BMP (4 bytes in UTF-8), full-width
// punctuation, a combining mark and an emoji.
func TestChineseTextRoundTripsByteForByte(t *testing.T) {
	texts := map[string]string{
		"met":       "張大山（戶主）、王𠀋妹",
		"needs":     "屋顶漏水；冬天取暖困難。需要：棉被×2",
		"help":      "聯繫村委會→申請危房改造 ✅",
		"follow_up": "下月複查e\u0301。「五小」：小問題、小爭吵",
	}
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	f := syncer.NewFields().Set("household_id", "H003").Set("visited_on", "2026-11-22")
	for k, v := range texts {
		f.Set(k, v)
	}
	id := must[string](t)(member.Create("visit", f))
	check := func(where string, got func(field string) string) {
		t.Helper()
		for k, want := range texts {
			if g := got(k); g != want {
				t.Errorf("%s: %s = %q (% x), want %q (% x)", where, k, g, []byte(g), want, []byte(want))
			}
		}
	}
	check("device before sync", must[*syncer.Item](t)(member.Get(id)).Field)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	check("device after sync", must[*syncer.Item](t)(member.Get(id)).Field)
	check("server", func(k string) string { return serverRecord(t, e, id).GetFields()[k].GetValue() })
	check("secretary's device", must[*syncer.Item](t)(sec.Get(id)).Field)
	for _, r := range export(t, e) {
		if r.GetId() == id {
			check("export", func(k string) string { return r.GetFields()[k].GetValue() })
		}
	}
	for _, c := range waitStream(t, e) {
		if c.GetRecord().GetId() == id {
			check("changelog", func(k string) string { return c.GetRecord().GetFields()[k].GetValue() })
		}
	}
	// The imported household head, too.
	if got := must[*syncer.Item](t)(member.Get("H003")).Field("head"); got != "趙春梅" {
		t.Errorf("household head %q", got)
	}
}
