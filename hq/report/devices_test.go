package report_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq/report"
)

func TestDevices(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 5)
	type dev struct {
		id, user, version string
		ageDays           float64
		pending           int
		revoked           bool
	}
	devs := []dev{
		{"d1", "P-T1V1G1-0", "1.2.0", 0.5, 0, false},
		{"d2", "P-T1V1G1-1", "1.2.0", 8, 3, false},
		{"d3", "P-T1V2G1-0", "1.1.0", 30, 0, false},
		{"d4", "P-T2V1G1-0", "1.1.0", 100, 1, false},
		{"d5", "P-T2V1G2-1", "1.2.0", 2, 2, false},
		{"d6", "P-T1V1G2-0", "1.0.0", 50, 0, true}, // revoked: not in use
		{"d7", "P-T1V1G2-1", "1.2.0", 6.9, 0, false},
	}
	for _, d := range devs {
		rev := int64(0)
		if d.revoked {
			rev = c.now - 86400000
		}
		ins(t, db, "devices", map[string]any{"id": d.id, "user_id": d.user, "name": "手机" + d.id, "app_version": d.version,
			"last_seen_ms": c.now - int64(d.ageDays*86400000), "pending": d.pending, "revoked_ms": rev, "seq": 1})
	}
	for _, tc := range []struct {
		town, days string
		n          float64
	}{{"", "", 7}, {"", "20", 20}, {"T1", "", 7}, {"T2", "1", 1}} {
		q := report.Query{Town: tc.town, NowMs: c.now}
		if tc.days != "" {
			q.Filter = map[string]string{"days": tc.days}
		}
		res := page(t, db, "devices", q)
		var active, stale, pending int
		versions := map[string]int{}
		var staleIDs []string
		for _, d := range devs {
			if d.revoked || tc.town != "" && !strings.Contains(d.user, "-"+tc.town) {
				continue
			}
			active++
			versions[d.version]++
			if d.pending > 0 {
				pending++
			}
			if d.ageDays > tc.n {
				stale++
				staleIDs = append(staleIDs, d.id)
			}
		}
		sum := table(t, res, "devices-summary").Rows[0]
		if int(sum[0].Num) != active || int(sum[1].Num) != stale || int(sum[2].Num) != pending {
			t.Errorf("%+v: summary %v %v %v, want %d %d %d", tc, sum[0].Num, sum[1].Num, sum[2].Num, active, stale, pending)
		}
		var got []string
		for _, r := range table(t, res, "devices-not-synced").Rows {
			got = append(got, r[0].Text)
			if !strings.HasPrefix(r[2].Text, "党员") {
				t.Errorf("device %s: user shown as %q, want the member's name", r[0].Text, r[2].Text)
			}
		}
		if fmt.Sprint(sortedCopy(got)) != fmt.Sprint(sortedCopy(staleIDs)) {
			t.Errorf("%+v: not synced %v, want %v", tc, got, staleIDs)
		}
		for _, r := range table(t, res, "app-versions").Rows {
			if int(r[1].Num) != versions[r[0].Text] {
				t.Errorf("%+v: version %s on %v devices, want %d", tc, r[0].Text, r[1].Num, versions[r[0].Text])
			}
		}
		if n := checkLinks(t, db, q, res); n < 4 {
			t.Errorf("only %d links followed", n)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestChains(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 9)
	for _, d := range []struct{ id, user string }{{"okA", "P-T1V1G1-0"}, {"refusedB", "P-T1V1G1-1"}, {"editedC", "P-T1V2G1-0"},
		{"gapD", "P-T2V1G1-0"}, {"emptyE", "P-T2V1G1-1"}} {
		ins(t, db, "devices", map[string]any{"id": d.id, "user_id": d.user, "name": d.id, "last_seen_ms": c.now, "seq": 1})
	}
	n := 0
	// chain makes n events of a device; before calls change one event's
	// stored form (after its hash was made), refused marks which are refused.
	chain := func(dev string, count int, refused map[int]bool, tamper func(i int, f map[string]string), emptyDetail bool) {
		prev := ""
		for i := range count {
			n++
			f := map[string]string{"type": "service_request", "village_id": "T1V1", "occurred_on": "2026-12-0" + fmt.Sprint(i+1),
				"subject": fmt.Sprintf("代办%d", i), "service_mode": "proxy", "detail": "材料已交"}
			if emptyDetail {
				f["detail"] = "" // sent empty: in the hash as ""
			}
			if prev != "" {
				f["prev_hash"] = prev
			}
			f["hash"] = domain.EventHash(f)
			prev = f["hash"]
			if refused[i] {
				ins(t, db, "refused_events", map[string]any{"device_id": dev, "device_seq": i + 1, "user_id": "u", "record_id": fmt.Sprint("R", n),
					"prev_hash": f["prev_hash"], "hash": f["hash"], "code": "PERMISSION_DENIED", "seq": n})
				continue
			}
			if tamper != nil {
				tamper(i, f)
			}
			ins(t, db, "events", map[string]any{"id": fmt.Sprintf("E%s%d", dev, i), "device_id": dev, "type": f["type"], "village_id": f["village_id"],
				"town_id": "T1", "occurred_on": f["occurred_on"], "month": "2026-12", "subject": f["subject"], "detail": f["detail"],
				"service_mode": f["service_mode"], "prev_hash": f["prev_hash"], "hash": f["hash"], "version": int64(n)})
		}
	}
	chain("okA", 3, nil, nil, false)
	chain("refusedB", 4, map[int]bool{1: true}, nil, false)
	chain("editedC", 3, nil, func(i int, f map[string]string) {
		if i == 1 {
			f["subject"] = "改过的"
		}
	}, false)
	chain("gapD", 4, nil, nil, false)
	if _, err := db.Exec(`DELETE FROM events WHERE id = 'EgapD1'`); err != nil {
		t.Fatal(err)
	}
	chain("emptyE", 2, nil, nil, true)

	res := page(t, db, "chains", report.Query{NowMs: c.now, Lang: "en"})
	rows := table(t, res, "chains").Rows
	want := map[string]string{"okA": "", "refusedB": "", "editedC": "edited", "gapD": "gap", "emptyE": ""}
	if len(rows) != len(want) {
		t.Fatalf("chains: %d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		fault, ok := want[r[0].Text]
		if !ok {
			t.Errorf("unexpected device %s", r[0].Text)
			continue
		}
		if fault == "" && (r[4].Text != "ok" || r[5].Text != "") || fault != "" && (r[4].Text != "broken" || !strings.Contains(r[5].Text, fault)) {
			t.Errorf("device %s: %s %q, want fault %q", r[0].Text, r[4].Text, r[5].Text, fault)
		}
		if i < 2 && r[4].Text != "broken" {
			t.Errorf("row %d: %s, want the broken chains first", i, r[0].Text)
		}
	}
	// the refused link is what keeps B whole: without it the chain has a gap
	if _, err := db.Exec(`DELETE FROM refused_events WHERE device_id = 'refusedB'`); err != nil {
		t.Fatal(err)
	}
	res = page(t, db, "chains", report.Query{NowMs: c.now, Lang: "en", Filter: map[string]string{"status": "broken"}})
	var broken []string
	for _, r := range table(t, res, "chains").Rows {
		broken = append(broken, r[0].Text)
	}
	if fmt.Sprint(sortedCopy(broken)) != "[editedC gapD refusedB]" {
		t.Errorf("broken without B's refused link: %v", broken)
	}
	// a town secretary sees the chains of their town's devices only
	res = page(t, db, "chains", report.Query{NowMs: c.now, Town: "T2"})
	var t2 []string
	for _, r := range table(t, res, "chains").Rows {
		t2 = append(t2, r[0].Text)
	}
	if fmt.Sprint(sortedCopy(t2)) != "[emptyE gapD]" {
		t.Errorf("T2's chains: %v, want emptyE and gapD", t2)
	}
}
