package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestChangelogAndExportCarryVoidAndHistory: a need followed to its
// resolution, a project started then voided, and a voided visit reach the
// JetStream changelog (real NATS) and the Export RPC with their status
// history (from, to, who, the server's time) and their void (reason, who,
// the server's time): HQ counts from them, so each move and each void is a
// change of its own and the last change of a record is the record as the
// server holds it.
func TestChangelogAndExportCarryVoidAndHistory(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Secretary)
	start := time.Now().UnixMilli()

	need := newID()
	member.mustApply("member raises a need", create(need, pb.Kind_KIND_NEED, map[string]string{
		"village_id": testenv.Village, "household_id": "H001", "category": "medical", "summary": "藥費困難"}))
	take := op(need, pb.Kind_KIND_NEED, pb.Op_OP_TRANSITION, map[string]string{"status": "taken", "help": "聯繫醫保"})
	take.FromStatus = "raised"
	sec.mustApply("secretary takes it up", take)
	resolve := op(need, pb.Kind_KIND_NEED, pb.Op_OP_TRANSITION, map[string]string{"status": "resolved", "resolution": "已報銷"})
	resolve.FromStatus = "taken"
	sec.mustApply("secretary resolves it", resolve)

	project := newID()
	member.mustApply("member starts a project", create(project, pb.Kind_KIND_PROJECT, map[string]string{"village_id": testenv.Village, "title": "修村道"}))
	begin := op(project, pb.Kind_KIND_PROJECT, pb.Op_OP_TRANSITION, map[string]string{"status": "in_progress"})
	begin.FromStatus = "planned"
	member.mustApply("member begins it", begin)
	sec.mustApply("secretary voids it", op(project, pb.Kind_KIND_PROJECT, pb.Op_OP_VOID, map[string]string{"reason": "重複錄入"}))

	visit := newID()
	member.mustApply("visit", create(visit, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H002", "visited_on": "2026-12-01"}))
	member.mustApply("author voids the visit", op(visit, pb.Kind_KIND_VISIT, pb.Op_OP_VOID, map[string]string{"reason": "錄錯了"}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Relay().WaitPublished(ctx, last); err != nil {
		t.Fatalf("relay: %v", err)
	}
	_, changes := e.StreamChanges()
	byRecord := map[string][]*pb.Record{}
	for _, c := range changes {
		byRecord[c.GetRecord().GetId()] = append(byRecord[c.GetRecord().GetId()], c.GetRecord())
	}

	wantHistory := func(what string, r *pb.Record, moves ...[3]string) {
		t.Helper()
		h := r.GetHistory()
		if len(h) != len(moves) {
			t.Fatalf("%s: history %v, want %d lines", what, h, len(moves))
		}
		for i, m := range moves {
			if h[i].GetFrom() != m[0] || h[i].GetTo() != m[1] || h[i].GetAuthorId() != m[2] || h[i].GetAtMs() < start || h[i].GetHlc() == "" {
				t.Fatalf("%s: history line %d = %v, want %s -> %s by %s at the server's time", what, i, h[i], m[0], m[1], m[2])
			}
		}
	}

	// The need: three changes, each with one more line of history.
	ns := byRecord[need]
	if len(ns) != 3 {
		t.Fatalf("need has %d changes on the stream, want 3 (create, taken, resolved)", len(ns))
	}
	for i, r := range ns {
		if len(r.GetHistory()) != i+1 || r.GetVoid() != nil {
			t.Fatalf("need's change %d: history %v void %v", i+1, r.GetHistory(), r.GetVoid())
		}
	}
	wantHistory("need", ns[2], [3]string{"", "raised", testenv.Member}, [3]string{"raised", "taken", testenv.Secretary}, [3]string{"taken", "resolved", testenv.Secretary})
	if f := ns[2].GetFields(); f["status"].GetValue() != "resolved" || f["taken_by"].GetValue() != testenv.Secretary || f["help"].GetValue() != "聯繫醫保" || f["resolution"].GetValue() != "已報銷" {
		t.Fatalf("need's last change: fields %v", f)
	}

	// The project: the void is a change of its own, after the move.
	ps := byRecord[project]
	if len(ps) != 3 || ps[1].GetVoid() != nil {
		t.Fatalf("project's changes %v: want create, in_progress, void", ps)
	}
	v := ps[2].GetVoid()
	if v.GetReason() != "重複錄入" || v.GetAuthorId() != testenv.Secretary || v.GetAtMs() < start || v.GetHlc() == "" {
		t.Fatalf("project's void %v, want 重複錄入 by %s at the server's time", v, testenv.Secretary)
	}
	wantHistory("project", ps[2], [3]string{"", "planned", testenv.Member}, [3]string{"planned", "in_progress", testenv.Member})
	if ps[2].GetFields()["leader_id"].GetValue() != testenv.Member {
		t.Fatalf("project's leader %q, want %s", ps[2].GetFields()["leader_id"].GetValue(), testenv.Member)
	}

	// The visit: voided, its fields untouched, no history (it has no status).
	vs := byRecord[visit]
	if len(vs) != 2 || vs[1].GetVoid().GetReason() != "錄錯了" || vs[1].GetVoid().GetAuthorId() != testenv.Member || len(vs[1].GetHistory()) != 0 {
		t.Fatalf("visit's changes %v: want create, then voided by the author", vs)
	}
	if vs[1].GetFields()["visited_on"].GetValue() != "2026-12-01" {
		t.Fatalf("voided visit's fields %v: want them kept", vs[1].GetFields())
	}

	// Export hands HQ the same last state of each record.
	_, actx := e.Admin()
	exported := map[string]*pb.Record{}
	for _, r := range testenv.Export(t, actx, e.Conn(), &pb.ExportRequest{Kinds: []pb.Kind{pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT, pb.Kind_KIND_VISIT}}) {
		exported[r.GetId()] = r
	}
	for id, rs := range map[string][]*pb.Record{need: ns, project: ps, visit: vs} {
		if !proto.Equal(exported[id], rs[len(rs)-1]) {
			t.Fatalf("export of %s:\n\t%v\nwant the changelog's last\n\t%v", id, exported[id], rs[len(rs)-1])
		}
	}
}
