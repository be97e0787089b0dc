package hq

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// line formats values as dump does.
func line(cols []string, vals ...any) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString("|")
		}
		fmt.Fprintf(&b, "%s=%v", c, vals[i])
	}
	return b.String()
}

func sortedLines(lines []string) []string {
	sort.Strings(lines)
	return lines
}

// checkWorld fails unless the model's tables hold exactly what w says,
// computed from the final state of each thing w recorded.
func checkWorld(t testing.TB, m *Model, w *world) {
	t.Helper()
	checkWorldIn(t, m, w, "")
}

// checkWorldIn is checkWorld for a world applied as region's changes:
// every row's region column says region.
func checkWorldIn(t testing.TB, m *Model, w *world, region string) {
	t.Helper()
	// Only region's rows: a model may hold other regions'.
	recordIDs := "SELECT id FROM households WHERE region = ?1 UNION ALL SELECT id FROM visits WHERE region = ?1 UNION ALL SELECT id FROM disputes WHERE region = ?1 " +
		"UNION ALL SELECT id FROM needs WHERE region = ?1 UNION ALL SELECT id FROM projects WHERE region = ?1 UNION ALL SELECT id FROM events WHERE region = ?1"
	where := map[string]string{
		"link_history":   "household_id IN (SELECT household_id FROM links WHERE region = ?1)",
		"status_history": "record_id IN (" + recordIDs + ")",
		"entries":        "record_id IN (" + recordIDs + ")",
	}
	expect := func(table string, want []string) {
		t.Helper()
		cond, ok := where[table]
		if !ok {
			cond = "region = ?1"
		}
		got := dumpWhere(t, m, table, cond, region)
		want = sortedLines(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("table %s: %d rows, want %d\n%s", table, len(got), len(want), firstDiff(got, want))
		}
	}
	var want []string
	for _, c := range w.units {
		u := c.Unit
		want = append(want, line([]string{"id", "kind", "parent_id", "name", "village_id", "town_id", "seq", "region"},
			u.Unit.Id, strings.ToLower(strings.TrimPrefix(u.Unit.Kind.String(), "UNIT_KIND_")), u.Unit.ParentId, u.Unit.Name, u.VillageId, u.TownId, c.Seq, region))
	}
	expect("units", want)
	want = nil
	for _, c := range w.people {
		p := c.Person
		want = append(want, line([]string{"id", "name", "role", "unit_id", "village_id", "town_id", "disabled_ms", "seq", "region"},
			p.Id, p.Name, strings.ToLower(strings.TrimPrefix(p.Role.String(), "ROLE_")), p.UnitId, p.VillageId, p.TownId, p.DisabledMs, c.Seq, region))
	}
	expect("people", want)
	want = nil
	for _, c := range w.links {
		want = append(want, line([]string{"household_id", "member_id", "since_ms", "by", "seq", "region"}, c.Link.HouseholdId, c.Link.MemberId, c.CommittedMs, c.Link.By, c.Seq, region))
	}
	expect("links", want)
	want = nil
	for _, c := range w.linkHist {
		want = append(want, line([]string{"household_id", "seq", "member_id", "previous_member_id", "from_ms", "by"},
			c.Link.HouseholdId, c.Seq, c.Link.MemberId, c.Link.PreviousMemberId, c.CommittedMs, c.Link.By))
	}
	expect("link_history", want)
	want = nil
	for _, c := range w.devices {
		d := c.Device
		want = append(want, line([]string{"id", "user_id", "name", "app_version", "enrolled_ms", "last_seen_ms", "pending", "revoked_ms", "restored_ms", "restores", "last_seq", "seq", "region"},
			d.DeviceId, d.UserId, d.Name, d.AppVersion, d.EnrolledMs, d.LastSeenMs, d.PendingCount, d.RevokedMs, d.RestoredMs, d.Restores, d.LastSeq, c.Seq, region))
	}
	expect("devices", want)
	want = nil
	for _, c := range w.refused {
		e := c.Refused
		want = append(want, line([]string{"device_id", "device_seq", "user_id", "record_id", "prev_hash", "hash", "code", "reason", "seq", "region"},
			e.DeviceId, e.DeviceSeq, e.UserId, e.RecordId, e.PrevHash, e.Hash, e.Code, e.Reason, c.Seq, region))
	}
	expect("refused_events", want)

	// Records: every column named after a field holds the field's final
	// value; the others as the schema documents them.
	byTable := map[string][]string{}
	var hist, entries []string
	for id, r := range w.recs {
		table := map[pb.Kind]string{pb.Kind_KIND_HOUSEHOLD: "households", pb.Kind_KIND_VISIT: "visits", pb.Kind_KIND_DISPUTE: "disputes",
			pb.Kind_KIND_NEED: "needs", pb.Kind_KIND_PROJECT: "projects", pb.Kind_KIND_EVENT: "events"}[r.Kind]
		row := rowOf(t, m, table, id)
		if row == nil {
			t.Errorf("%s %s: no row", table, id)
			continue
		}
		byTable[table] = append(byTable[table], id)
		f := func(name string) string { return r.Fields[name].GetValue() }
		wantCol := map[string]any{
			"id": id, "version": int64(r.Version), "author_id": r.AuthorId, "device_id": r.OriginDeviceId,
			"village_id": w.where[id][0], "town_id": w.where[id][1],
			"created_ms": w.firstMs[id], "updated_ms": w.lastMs[id],
			"voided": int64(0), "void_reason": "", "voided_ms": int64(0), "region": region,
		}
		if r.Void != nil {
			wantCol["voided"], wantCol["void_reason"], wantCol["voided_ms"] = int64(1), r.Void.Reason, r.Void.AtMs
		}
		for _, fd := range domain.SpecOf(r.Kind).Fields {
			if _, ok := row[fd.Name]; !ok || fd.List {
				continue
			}
			switch {
			case fd.Name == "members":
				n, _ := strconv.Atoi(f("members"))
				wantCol["members"] = int64(n)
			case fd.Name == "households":
				wantCol["households"] = strings.ReplaceAll(f("households"), " ", "")
			default:
				wantCol[fd.Name] = f(fd.Name)
			}
		}
		firstTo := func(statuses ...string) int64 {
			for _, h := range r.History {
				for _, s := range statuses {
					if h.To == s {
						return h.AtMs
					}
				}
			}
			return 0
		}
		switch r.Kind {
		case pb.Kind_KIND_VISIT:
			wantCol["month"] = f("visited_on")[:7]
		case pb.Kind_KIND_EVENT:
			wantCol["month"] = f("occurred_on")[:7]
		case pb.Kind_KIND_DISPUTE:
			wantCol["opened_ms"], wantCol["settled_ms"], wantCol["closed_ms"] = r.History[0].AtMs, firstTo("agreed", "failed", "referred", "withdrawn"), firstTo("closed")
		case pb.Kind_KIND_NEED:
			wantCol["raised_ms"], wantCol["met_ms"] = r.History[0].AtMs, firstTo("resolved")
		}
		for col, v := range row {
			wv, ok := wantCol[col]
			if !ok {
				t.Errorf("%s %s: column %s not checked by the test", table, id, col)
				continue
			}
			if fmt.Sprint(v) != fmt.Sprint(wv) {
				t.Errorf("%s %s: %s = %v, want %v", table, id, col, v, wv)
			}
		}
		for n, h := range r.History {
			hist = append(hist, line([]string{"record_id", "n", "kind", "from_status", "to_status", "at_ms", "author_id"},
				id, n, domain.KindName(r.Kind), h.From, h.To, h.AtMs, h.AuthorId))
		}
		counts := map[string]int{}
		for _, e := range r.Entries {
			entries = append(entries, line([]string{"record_id", "field", "n", "text", "author_id"}, id, e.Field, counts[e.Field], e.Text, e.AuthorId))
			counts[e.Field]++
		}
	}
	for _, table := range []string{"households", "visits", "disputes", "needs", "projects", "events"} {
		var n int
		if err := m.DB().QueryRow("SELECT count(*) FROM "+table+" WHERE region = ?", region).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(byTable[table]) {
			t.Errorf("%s: %d rows, want %d", table, n, len(byTable[table]))
		}
	}
	expect("status_history", hist)
	expect("entries", entries)
	if rs, _ := m.Region(region); rs.LastSeq != w.seq {
		t.Errorf("region %q: LastSeq %d, want %d", region, rs.LastSeq, w.seq)
	}
}

// rowOf reads one row of table by id as column -> value (nil: none).
func rowOf(t testing.TB, m *Model, table, id string) map[string]any {
	t.Helper()
	rows, err := m.DB().Query("SELECT * FROM "+table+" WHERE id = ?", id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil
	}
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out
}
