package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// enrolled enrolls a fresh device database for user against e and syncs it.
func enrolled(t *testing.T, e *testenv.Env, user string) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), user+".db")
	ok(t, device(db, "enroll", e.Code(user))...)
	ok(t, device(db, "sync")...)
	return db
}

// The conflict inbox lists a field two phones changed at once, with the
// value that stands and the one that lost and who wrote each; --json
// parses, the table reads in Chinese by default and in English with
// -lang en; settle --mine, --theirs and --value each empty the inbox at
// once and on the other phone after sync.
func TestDeviceConflictsInboxAndSettleCommands(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Secretary)

	inbox := func(db string) []conflictJSONItem {
		t.Helper()
		var items []conflictJSONItem
		decode(t, ok(t, device(db, "conflicts", "--json")...), &items)
		return items
	}
	// conflict returns the value that stands: the later clock's, which
	// for two phones a millisecond apart may be either.
	conflict := func(flag, mine, theirs string) string {
		t.Helper()
		ok(t, device(member, "household", "edit", "-id", "H001", "-"+flag, mine)...)
		ok(t, device(sec, "household", "edit", "-id", "H001", "-"+flag, theirs)...)
		ok(t, device(member, "sync")...)
		ok(t, device(sec, "sync")...)
		ok(t, device(member, "sync")...)
		items := inbox(sec)
		if len(items) != 1 {
			t.Fatalf("inbox: %+v", items)
		}
		return items[0].Standing.Value
	}

	standing := conflict("phone", "13800000011", "13800000022")
	c := inbox(sec)[0]
	values := map[string]string{c.Standing.Value: c.Standing.AuthorID}
	for _, v := range c.Losing {
		values[v.Value] = v.AuthorID
	}
	if c.RecordID != "H001" || c.Kind != "household" || c.Field != "phone" || len(c.Losing) != 1 || values["13800000022"] != testenv.Secretary ||
		c.Losing[0].AuthorID == "" || c.KindLabel != "农户" || c.FieldLabel != "电话" || (standing == "13800000022" && values["13800000011"] != testenv.Member) {
		t.Fatalf("inbox item: %+v", c)
	}
	zh, en := ok(t, device(sec, "conflicts")...), ok(t, device(sec, "-lang", "en", "conflicts")...)
	if !strings.Contains(zh, "农户") || !strings.Contains(zh, "phone 电话") || !strings.Contains(zh, "现值") || !strings.Contains(zh, "13800000011") {
		t.Errorf("the inbox in Chinese:\n%s", zh)
	}
	if !strings.Contains(en, "household") || strings.Contains(en, "农户") || !strings.Contains(en, "stands") || !strings.Contains(en, "lost") {
		t.Errorf("the inbox in English:\n%s", en)
	}
	if out := ok(t, device(member, "list", "household")...); !strings.Contains(out, "有冲突") {
		t.Errorf("the list marks the conflict:\n%s", out)
	}

	for _, bad := range [][]string{{"settle", "H001", "phone"}, {"settle", "H001", "phone", "--mine", "--theirs"}, {"settle", "H001", "--mine"}} {
		if r := fieldctl(t, device(member, bad...)...); r.code != 2 || !strings.Contains(r.stderr, "settle") {
			t.Errorf("%v: exit %d, stderr %q", bad, r.code, r.stderr)
		}
	}

	// Keep mine: the member's losing value.
	ok(t, device(member, "settle", "H001", "phone", "--mine")...)
	if items := inbox(member); len(items) != 0 {
		t.Fatalf("the member's inbox right after settling: %+v", items)
	}
	ok(t, device(member, "sync")...)
	ok(t, device(sec, "sync")...)
	var h deviceItemJSON
	for _, db := range []string{member, sec} {
		if items := inbox(db); len(items) != 0 {
			t.Fatalf("inbox after sync: %+v", items)
		}
		decode(t, ok(t, device(db, "show", "H001", "--json")...), &h)
		if h.Fields["phone"] != "13800000011" || len(h.Conflicts) != 0 {
			t.Fatalf("H001 after keep mine: %+v", h)
		}
	}

	// Take theirs, then a new value, from the secretary's phone.
	tags := conflict("tags", "低保戶", "五保戶")
	ok(t, device(sec, "settle", "H001", "tags", "--theirs")...)
	conflict("members", "5", "6")
	ok(t, device(sec, "settle", "H001", "members", "--value", "7")...)
	ok(t, device(sec, "sync")...)
	ok(t, device(member, "sync")...)
	decode(t, ok(t, device(member, "show", "H001", "--json")...), &h)
	if items := inbox(member); len(items) != 0 || h.Fields["tags"] != tags || h.Fields["members"] != "7" {
		t.Fatalf("after take theirs and a new value: inbox %+v, fields %v", items, h.Fields)
	}

	// A settle the user may not make is refused offline, saying why.
	r := fieldctl(t, device(member, "settle", "H001", "head", "--value", "张大海")...)
	if r.code != 1 || !strings.Contains(r.stderr, "household.head: a member may not settle it") {
		t.Errorf("a member settling the address: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A voided visit stays on the phone, marked 已作废 (voided with -lang en)
// in the list and in show, with voided and void in --json; it refuses
// further edits offline, and the secretary's phone shows it voided too.
func TestDeviceVoidMarksTheRecordAndRefusesEdits(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Secretary)
	visit := strings.TrimSpace(ok(t, device(member, "visit", "add", "-household", "H001", "-date", "2026-11-20", "-needs", "屋顶漏雨")...))
	ok(t, device(member, "sync")...)

	if r := fieldctl(t, device(member, "void", visit)...); r.code != 2 || !strings.Contains(r.stderr, "-reason is required") {
		t.Errorf("void without a reason: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(member, "void", visit, "-reason", "重复录入")...)
	if out := ok(t, device(member, "list", "visit")...); !strings.Contains(out, "已作废") || !strings.Contains(out, "重复录入") {
		t.Errorf("the list marks the void:\n%s", out)
	}
	if out := ok(t, device(member, "-lang", "en", "list", "visit")...); !strings.Contains(out, "void") || strings.Contains(out, "已作废") {
		t.Errorf("the list in English:\n%s", out)
	}
	r := fieldctl(t, device(member, "visit", "amend", "-id", visit, "-help", "已联系")...)
	if r.code != 1 || !strings.Contains(r.stderr, "visit: this visit was voided (重复录入): it takes no more changes") {
		t.Errorf("amend a voided visit: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(member, "sync")...)
	ok(t, device(sec, "sync")...)
	var items []deviceItemJSON
	decode(t, ok(t, device(sec, "list", "visit", "--json")...), &items)
	if len(items) != 1 || !items[0].Voided || items[0].Void == nil || items[0].Void.Reason != "重复录入" || items[0].Void.AuthorID != testenv.Member ||
		items[0].Void.AtMs == 0 || items[0].Fields["needs"] != "屋顶漏雨" {
		t.Fatalf("the secretary's visits: %+v", items)
	}
	if out := ok(t, device(sec, "show", visit)...); !strings.Contains(out, "已作废: 重复录入 ("+testenv.Member) {
		t.Errorf("show marks the void:\n%s", out)
	}
}

// -lang and FIELDCTL_LANG choose the language of the tables; a language
// fieldctl does not have is refused, naming the variable.
func TestDeviceLangFlagAndEnvironment(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med := enrolled(t, e, testenv.Mediator)
	id := strings.TrimSpace(ok(t, device(med, "dispute", "open", "-category", "quarrel", "-title", "宅基地边界争吵")...))
	zh := ok(t, device(med, "list", "dispute")...)
	if !strings.Contains(zh, "矛盾纠纷") || !strings.Contains(zh, "[待调解] 宅基地边界争吵") {
		t.Errorf("default (zh):\n%s", zh)
	}
	t.Setenv("FIELDCTL_LANG", "en")
	en := ok(t, device(med, "list", "dispute")...)
	if !strings.Contains(en, id+"  dispute  pending  [open] 宅基地边界争吵") {
		t.Errorf("FIELDCTL_LANG=en:\n%s", en)
	}
	if out := ok(t, device(med, "-lang", "zh", "show", id)...); !strings.Contains(out, "状态") || !strings.Contains(out, "待调解") || !strings.Contains(out, "category    类别") {
		t.Errorf("-lang zh wins over FIELDCTL_LANG:\n%s", out)
	}
	var items []deviceItemJSON
	decode(t, ok(t, device(med, "list", "--json")...), &items)
	if len(items) != 1 || items[0].Fields["status"] != "open" || items[0].Fields["category"] != "quarrel" || items[0].Labels["status"] != "open" || items[0].Labels["kind"] != "dispute" {
		t.Errorf("--json keeps machine names, labels in the chosen language: %+v", items)
	}
	t.Setenv("FIELDCTL_LANG", "fr")
	if r := fieldctl(t, device(med, "list")...); r.code != 2 || !strings.Contains(r.stderr, `FIELDCTL_LANG="fr"`) || !strings.Contains(r.stderr, "want zh or en") {
		t.Errorf("FIELDCTL_LANG=fr: exit %d, stderr %q", r.code, r.stderr)
	}
}
