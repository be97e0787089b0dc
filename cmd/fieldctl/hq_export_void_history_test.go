package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// TestHQExportMarksVoidsAndStatusDates: a need raised by a member and
// resolved by the secretary, a project completed, and a duplicate need
// voided reach fieldctl hq export with what HQ counts from: in NDJSON the
// void and the history as the server holds them; in CSV the columns voided,
// void_reason, void_by, voided_at, opened_at and closed_at. The voided
// record is exported, marked, and the summary says it counts nowhere.
func TestHQExportMarksVoidsAndStatusDates(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	start := time.Now().Add(-time.Second).UTC()
	member := filepath.Join(t.TempDir(), "member.db")
	sec := filepath.Join(t.TempDir(), "sec.db")
	ok(t, device(member, "enroll", "-name", "党员的手机", e.Code(testenv.Member))...)
	ok(t, device(sec, "enroll", "-name", "书记的手机", e.Code(testenv.Secretary))...)

	need := strings.TrimSpace(ok(t, device(member, "need", "raise", "-household", "H001", "-category", "medical", "-summary", "药费困难")...))
	dup := strings.TrimSpace(ok(t, device(member, "need", "raise", "-household", "H001", "-category", "medical", "-summary", "药费困难")...))
	project := strings.TrimSpace(ok(t, device(member, "project", "add", "-title", "修村道")...))
	ok(t, device(member, "void", dup, "-reason", "重复录入")...)
	ok(t, device(member, "sync")...)
	ok(t, device(sec, "sync")...)
	ok(t, device(sec, "need", "take", need, "-help", "联系医保")...)
	ok(t, device(sec, "need", "resolve", need, "-resolution", "已报销")...)
	ok(t, device(sec, "project", "complete", project, "-outcome", "硬化道路800米")...)
	ok(t, device(sec, "sync")...)

	t.Run("ndjson", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "all.ndjson")
		r := fieldctl(t, hq(e, tok, "export", "-kind", "need,project", "-o", file)...)
		if r.code != 0 {
			t.Fatalf("export: %+v", r)
		}
		if !strings.Contains(r.stderr, "exported 3 records") || !strings.Contains(r.stderr, "1 of them voided (marked voided): count them nowhere") {
			t.Fatalf("summary:\n%s", r.stderr)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		recs := map[string]hqRecordJSON{}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var rec hqRecordJSON
			decode(t, line, &rec)
			recs[rec.ID] = rec
		}
		n, d, p := recs[need], recs[dup], recs[project]
		if n.Voided || n.Void != nil || p.Voided {
			t.Fatalf("need or project marked voided: %+v %+v", n, p)
		}
		if !d.Voided || d.Void == nil || d.Void.Reason != "重复录入" || d.Void.AuthorID != testenv.Member || d.Void.AtMs < start.UnixMilli() {
			t.Fatalf("duplicate need's void: %+v %+v", d.Voided, d.Void)
		}
		var moves []string
		for _, h := range n.History {
			moves = append(moves, h.From+">"+h.To+" "+h.AuthorID)
			if h.AtMs < start.UnixMilli() {
				t.Fatalf("history line %+v without the server's time", h)
			}
		}
		if want := ">raised " + testenv.Member + ",raised>taken " + testenv.Secretary + ",taken>resolved " + testenv.Secretary; strings.Join(moves, ",") != want {
			t.Fatalf("need's history %v, want %s", moves, want)
		}
		if n.Fields["taken_by"] != testenv.Secretary || n.Fields["resolution"] != "已报销" {
			t.Fatalf("need's fields %v", n.Fields)
		}
		// The JSON keeps the machine's words: a consumer reads "voided".
		if !strings.Contains(string(b), `"voided":true`) || !strings.Contains(string(b), `"history":[{"from":"","to":"raised"`) {
			t.Fatalf("NDJSON without voided/history keys:\n%s", b)
		}
	})

	t.Run("csv", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "needs.csv")
		ok(t, hq(e, tok, "export", "-format", "csv", "-kind", "need,project", "-o", file)...)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff")))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		head := rows[0]
		if want := "id,kind,version,author_id,voided,void_reason,void_by,voided_at,opened_at,closed_at"; strings.Join(head[:10], ",") != want {
			t.Fatalf("CSV header %v, want it to start %s", head, want)
		}
		col := map[string]int{}
		for i, h := range head {
			col[h] = i
		}
		byID := map[string][]string{}
		for _, row := range rows[1:] {
			byID[row[0]] = row
		}
		at := func(id, name string) string { return byID[id][col[name]] }
		when := func(id, name string) time.Time {
			t.Helper()
			v, err := time.Parse(time.RFC3339, at(id, name))
			if err != nil || v.Before(start.Truncate(time.Second)) || !strings.HasSuffix(at(id, name), "Z") {
				t.Fatalf("%s of %s = %q: want an RFC 3339 UTC time of the server's clock (%v)", name, id, at(id, name), err)
			}
			return v
		}
		if at(need, "voided") != "0" || at(need, "status") != "resolved" || at(need, "taken_by") != testenv.Secretary {
			t.Fatalf("need's row %v", byID[need])
		}
		if when(need, "closed_at").Before(when(need, "opened_at")) {
			t.Fatalf("need closed %s before it opened %s", at(need, "closed_at"), at(need, "opened_at"))
		}
		if at(project, "voided") != "0" || at(project, "status") != "completed" || at(project, "outcome") != "硬化道路800米" {
			t.Fatalf("project's row %v", byID[project])
		}
		when(project, "closed_at")
		if at(dup, "voided") != "1" || at(dup, "void_reason") != "重复录入" || at(dup, "void_by") != testenv.Member || at(dup, "closed_at") != "" {
			t.Fatalf("duplicate's row %v: want voided 1, its reason and author, not closed", byID[dup])
		}
		when(dup, "voided_at")
		when(dup, "opened_at")
		// Counting as HQ does: the rows with voided 0.
		counted := 0
		for _, row := range rows[1:] {
			if row[col["kind"]] == "need" && row[col["voided"]] == "0" {
				counted++
			}
		}
		if counted != 1 {
			t.Fatalf("%d needs counted, want 1 (the duplicate is voided)", counted)
		}
	})

	t.Run("tail --json carries the void", func(t *testing.T) {
		last, err := e.Store.LastSeq(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := e.Server.Relay().WaitPublished(ctx, last); err != nil {
			t.Fatalf("relay: %v", err)
		}
		out := ok(t, "hq", "tail", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "tail"),
			"-from-start", "-n", "1000", "-subject", "fieldsync.changes.*.need", "--json")
		var dupChange changeJSON
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var c changeJSON
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				t.Fatalf("tail line %q: %v", line, err)
			}
			if c.Record != nil && c.Record.ID == dup {
				dupChange = c
			}
		}
		if r := dupChange.Record; r == nil || !r.Voided || r.Void.Reason != "重复录入" || len(r.History) != 1 {
			t.Fatalf("the duplicate's last change on the changelog: %+v", r)
		}
	})
}
