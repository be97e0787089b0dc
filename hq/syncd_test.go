package hq_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// The model a real syncd's changelog builds, read with an HQ credential of
// its embedded NATS (durable consumer, explicit acks), holds every record
// exactly as the ExportService exports it: the same version, every field,
// the void, the status history and the entries; and the org as imported
// and changed since: units, people, links with their history, devices.
// It does again after the stream is deleted and syncd's relay rebuilds it.
func TestTheModelOfARealSyncdMatchesItsExport(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, med, sec := e.Device(testenv.Member), e.Device(testenv.Mediator), e.Device(testenv.Secretary)
	for _, d := range []*syncer.Device{member, med, sec} {
		testenv.Sync(t, d)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	create := func(d *syncer.Device, kind string, f *syncer.Fields) string {
		t.Helper()
		id, err := d.Create(kind, f)
		must(err)
		return id
	}
	var visits []string
	for i := range 6 {
		visits = append(visits, create(member, "visit", syncer.NewFields().Set("household_id", fmt.Sprintf("H00%d", 1+i%3)).
			Set("visited_on", fmt.Sprintf("2026-%02d-1%d", 10+i%3, i)).Set("met", "張大山（戶主）").Set("needs", "屋顶漏水")))
	}
	must(member.Update(visits[0], syncer.NewFields().Set("follow_up", "下月再访")))
	must(member.Void(visits[1], "重复录入"))
	need := create(member, "need", syncer.NewFields().Set("household_id", "H001").Set("category", "medical").Set("summary", "看病难"))
	must(member.Append(need, "notes", "已联系"))
	create(member, "event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-11-22").Set("subject", "三會一課"))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	must(sec.TransitionWith(need, "taken", syncer.NewFields().Set("help", "联系卫生院")))
	dispute := create(med, "dispute", syncer.NewFields().Set("category", "quarrel").Set("title", "宅基地边界争吵").Set("occurred_on", "2026-11-01"))
	must(med.Transition(dispute, "mediating"))
	must(med.Append(dispute, "sessions", "第一次调解"))
	must(med.TransitionWith(dispute, "agreed", syncer.NewFields().Set("level", "village").Set("agreed_on", "2026-11-20").Set("agreement", "退让一米")))
	testenv.Sync(t, med)
	project := create(sec, "project", syncer.NewFields().Set("title", "修村道").Set("households", "H001,H002").Set("planned_on", "2026-12-01"))
	must(sec.Transition(project, "in_progress"))
	must(sec.Append(project, "progress", "开工"))
	create(sec, "event", syncer.NewFields().Set("type", "party_day").Set("occurred_on", "2026-11-30").Set("subject", "主題黨日"))
	testenv.Sync(t, sec)
	must(med.Transition(dispute, "closed"))
	testenv.Sync(t, med)

	admin, actx := e.Admin()
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H003", MemberId: testenv.Member2}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DisableUser(actx, &pb.DisableUserRequest{UserId: testenv.Mediator2}); err != nil {
		t.Fatal(err)
	}

	js, err := jetstream.New(e.HQNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := hq.Open(filepath.Join(t.TempDir(), "model.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	go func() { done <- m.Follow(ctx, js, hq.FollowConfig{Durable: "hq-model-test", Log: log}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
	}()
	last, err := e.Store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the model to reach the server's last change", func() bool { return m.LastSeq() == last })
	logMu.Lock()
	if strings.Contains(logs.String(), "level=ERROR") || strings.Contains(logs.String(), "reloading") {
		t.Errorf("following a real syncd's stream from its start:\n%s", logs.String())
	}
	logMu.Unlock()
	if m.Lineage() != e.Store.Instance() {
		t.Errorf("model lineage %q, the server's %q", m.Lineage(), e.Store.Instance())
	}

	db := m.DB()
	verify := func() {
		t.Helper()
		exported := testenv.Export(t, actx, e.Conn(), &pb.ExportRequest{})
		tables := map[pb.Kind]string{pb.Kind_KIND_HOUSEHOLD: "households", pb.Kind_KIND_VISIT: "visits", pb.Kind_KIND_DISPUTE: "disputes",
			pb.Kind_KIND_NEED: "needs", pb.Kind_KIND_PROJECT: "projects", pb.Kind_KIND_EVENT: "events"}
		count := map[string]int{}
		for _, r := range exported {
			table := tables[r.GetKind()]
			count[table]++
			cols := []string{"version", "voided", "void_reason", "author_id", "device_id", "town_id"}
			var fieldCols []string
			for _, f := range domain.SpecOf(r.GetKind()).Fields {
				if !f.List && hasColumn(t, db, table, f.Name) {
					fieldCols = append(fieldCols, f.Name)
				}
			}
			vals := make([]string, len(cols)+len(fieldCols))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			q := "SELECT " + strings.Join(append(append([]string{}, cols...), fieldCols...), ", ") + " FROM " + table + " WHERE id = ?"
			if err := db.QueryRow(q, r.GetId()).Scan(ptrs...); err != nil {
				t.Errorf("%s %s: %v", table, r.GetId(), err)
				continue
			}
			voided := "0"
			if r.GetVoid() != nil {
				voided = "1"
			}
			want := []string{strconv.FormatUint(r.GetVersion(), 10), voided, r.GetVoid().GetReason(), r.GetAuthorId(), r.GetOriginDeviceId(), testenv.Town}
			for _, f := range fieldCols {
				v := r.GetFields()[f].GetValue()
				if f == "members" && v == "" {
					v = "0"
				}
				want = append(want, v)
			}
			for i, c := range append(append([]string{}, cols...), fieldCols...) {
				if vals[i] != want[i] {
					t.Errorf("%s %s: %s = %q, the export says %q", table, r.GetId(), c, vals[i], want[i])
				}
			}
			var hist, entries int
			if err := db.QueryRow("SELECT (SELECT count(*) FROM status_history WHERE record_id = ?), (SELECT count(*) FROM entries WHERE record_id = ?)",
				r.GetId(), r.GetId()).Scan(&hist, &entries); err != nil {
				t.Fatal(err)
			}
			if hist != len(r.GetHistory()) || entries != len(r.GetEntries()) {
				t.Errorf("%s %s: %d history lines and %d entries, the export has %d and %d", table, r.GetId(), hist, entries, len(r.GetHistory()), len(r.GetEntries()))
			}
		}
		for _, table := range tables {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != count[table] {
				t.Errorf("%s: %d rows, the export has %d", table, n, count[table])
			}
		}
		if count["visits"] != 6 || count["disputes"] != 1 || count["needs"] != 1 || count["projects"] != 1 || count["events"] != 2 {
			t.Errorf("the export has %v: the test made 6 visits, a dispute, a need, a project and 2 events", count)
		}
		devices := map[string]string{}
		for d, user := range map[*syncer.Device]string{member: testenv.Member, med: testenv.Mediator, sec: testenv.Secretary} {
			id, err := d.Identity()
			if err != nil {
				t.Fatal(err)
			}
			devices[id.DeviceID] = user
		}
		checkOrg(t, db, devices)
	}
	verify()

	// The stream deleted: syncd's relay republishes every change from its
	// database, the durable consumer went with the stream, and the model
	// reloads from the first message to the same tables.
	rebuilt := meta(t, db, "rebuilt_ms")
	if err := e.JS.DeleteStream(context.Background(), domain.StreamName); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "the model reloaded from the rebuilt stream", func() bool {
		return meta(t, db, "rebuilt_ms") != rebuilt && m.LastSeq() == last
	})
	logMu.Lock()
	if !strings.Contains(logs.String(), "level=WARN msg=\"hq model: reloading") {
		t.Errorf("the reload is not logged at warn:\n%s", logs.String())
	}
	logMu.Unlock()
	verify()

	var status string
	var opened, settled, closed int64
	if err := db.QueryRow("SELECT status, opened_ms, settled_ms, closed_ms FROM disputes WHERE id = ?", dispute).Scan(&status, &opened, &settled, &closed); err != nil {
		t.Fatal(err)
	}
	if status != "closed" || opened == 0 || settled < opened || closed < settled {
		t.Errorf("dispute: status %s opened %d settled %d closed %d: want closed, in that order", status, opened, settled, closed)
	}
}

// checkOrg compares the model's org tables with the sample org as the
// test changed it.
func checkOrg(t *testing.T, db *sql.DB, devices map[string]string) {
	t.Helper()
	org := testenv.SampleOrg()
	kinds := map[pb.UnitKind]string{pb.UnitKind_UNIT_KIND_TOWN: "town", pb.UnitKind_UNIT_KIND_VILLAGE: "village", pb.UnitKind_UNIT_KIND_GRID: "grid"}
	villageOf := map[string]string{}
	for _, u := range org.GetUnits() {
		if u.GetKind() == pb.UnitKind_UNIT_KIND_VILLAGE {
			villageOf[u.GetId()] = u.GetId()
		}
		if u.GetKind() == pb.UnitKind_UNIT_KIND_GRID {
			villageOf[u.GetId()] = u.GetParentId()
		}
	}
	var want []string
	for _, u := range org.GetUnits() {
		want = append(want, strings.Join([]string{u.GetId(), kinds[u.GetKind()], u.GetParentId(), u.GetName(), villageOf[u.GetId()], testenv.Town}, "|"))
	}
	compare(t, db, "units", "SELECT id || '|' || kind || '|' || parent_id || '|' || name || '|' || village_id || '|' || town_id FROM units", want)
	roles := map[pb.Role]string{pb.Role_ROLE_MEMBER: "member", pb.Role_ROLE_MEDIATOR: "mediator", pb.Role_ROLE_SECRETARY: "secretary", pb.Role_ROLE_HQ: "hq"}
	want = nil
	for _, u := range org.GetUsers() {
		town, disabled := testenv.Town, "0"
		if u.GetRole() == pb.Role_ROLE_HQ {
			town = ""
		}
		if u.GetId() == testenv.Mediator2 {
			disabled = "1"
		}
		want = append(want, strings.Join([]string{u.GetId(), u.GetName(), roles[u.GetRole()], u.GetUnitId(), villageOf[u.GetUnitId()], town, disabled}, "|"))
	}
	compare(t, db, "people", "SELECT id || '|' || name || '|' || role || '|' || unit_id || '|' || village_id || '|' || town_id || '|' || (disabled_ms > 0) FROM people", want)
	want = nil
	for _, a := range org.GetAssignments() {
		member := a.GetMemberId()
		if a.GetHouseholdId() == "H003" {
			member = testenv.Member2
		}
		want = append(want, a.GetHouseholdId()+"|"+member)
	}
	compare(t, db, "links", "SELECT household_id || '|' || member_id FROM links", want)
	// The household's own member_id says the same as its link.
	compare(t, db, "households' member_id", "SELECT id || '|' || member_id FROM households", want)
	compare(t, db, "link_history of H003", "SELECT member_id || '|' || previous_member_id || '|' || (from_ms > 0) || '|' || (by LIKE 'admin:%') FROM link_history WHERE household_id = 'H003' ORDER BY seq",
		[]string{testenv.Member + "||1|1", testenv.Member2 + "|" + testenv.Member + "|1|1"})
	want = nil
	for id, user := range devices {
		want = append(want, id+"|"+user+"|1")
	}
	compare(t, db, "devices", "SELECT id || '|' || user_id || '|' || (enrolled_ms > 0) FROM devices", want)
}

func compare(t *testing.T, db *sql.DB, what, q string, want []string) {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if !strings.HasPrefix(what, "link_history") {
		slices.Sort(got)
		slices.Sort(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func meta(t testing.TB, db *sql.DB, key string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("SELECT value FROM meta WHERE key = ?", key).Scan(&v); err != nil && err != sql.ErrNoRows {
		t.Fatal(err)
	}
	return v
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func hasColumn(t testing.TB, db *sql.DB, table, col string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", table, col).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
