package syncer_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// answers records every Sync call's request and answer as the server
// made them (before the wire), and can change a request before the
// server reads it.
type answers struct {
	mu    sync.Mutex
	reqs  []*pb.SyncRequest
	resps []*pb.SyncResponse
	// edit, if set, changes a request before the server reads it.
	edit func(*pb.SyncRequest)
	// between, if set, runs after the push and before the pull is read:
	// it is called from the server's handler with the request.
	// lose, if set, loses the next answer: the server applies the push,
	// the device gets Unavailable.
	lose bool
}

func (a *answers) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	r, ok := req.(*pb.SyncRequest)
	if !ok {
		return h(ctx, req)
	}
	a.mu.Lock()
	edit := a.edit
	a.mu.Unlock()
	if edit != nil {
		edit(r)
	}
	resp, err := h(ctx, req)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lose && err == nil {
		a.lose = false
		resp, err = nil, status.Error(codes.Unavailable, "the answer was lost on the way")
	}
	a.reqs = append(a.reqs, proto.Clone(r).(*pb.SyncRequest))
	if sr, ok := resp.(*pb.SyncResponse); ok && err == nil {
		// The records the pull put in as stored bytes sit in the unknown
		// fields: a round trip through the wire encoding reads them.
		b, merr := proto.Marshal(sr)
		if merr != nil {
			panic(merr)
		}
		back := &pb.SyncResponse{}
		if uerr := proto.Unmarshal(b, back); uerr != nil {
			panic(uerr)
		}
		a.resps = append(a.resps, back)
	} else {
		a.resps = append(a.resps, nil)
	}
	return resp, err
}

// last returns the last call's request and answer, and forgets the calls.
func (a *answers) last(t *testing.T) (*pb.SyncRequest, *pb.SyncResponse) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.resps) == 0 {
		t.Fatal("no sync call seen")
	}
	req, resp := a.reqs[len(a.reqs)-1], a.resps[len(a.resps)-1]
	a.reqs, a.resps = nil, nil
	return req, resp
}

func (a *answers) reset() {
	a.mu.Lock()
	a.reqs, a.resps = nil, nil
	a.mu.Unlock()
}

func holds(resp *pb.SyncResponse, id string) (record, echo bool) {
	for _, r := range resp.GetRecords() {
		if r.GetId() == id {
			record = true
		}
	}
	for _, e := range resp.GetEchoes() {
		if e.GetRecordId() == id {
			echo = true
		}
	}
	return record, echo
}

// expects reports whether req sends a hash for record id: on the last
// of its mutations (expect_hash, 16 bytes), and on no other. It fails the
// test where the request sends the older form (expected), or a hash on
// another mutation of the record.
func expects(t *testing.T, req *pb.SyncRequest, id string) bool {
	t.Helper()
	if len(req.GetExpected()) > 0 {
		t.Fatalf("the request sent the older form of the hashes: %v", req.GetExpected())
	}
	last := -1
	for i, m := range req.GetMutations() {
		if m.GetRecordId() == id {
			last = i
		}
	}
	for i, m := range req.GetMutations() {
		if m.GetRecordId() != id || len(m.GetExpectHash()) == 0 {
			continue
		}
		if i != last || len(m.GetExpectHash()) != 16 {
			t.Fatalf("%s: a hash of %d bytes on mutation %d of the request, the record's last is %d", id, len(m.GetExpectHash()), i, last)
		}
		return true
	}
	return false
}

// hashes lists the request's hashes, for a failure's message.
func hashes(req *pb.SyncRequest) []string {
	var out []string
	for _, m := range req.GetMutations() {
		if len(m.GetExpectHash()) > 0 {
			out = append(out, fmt.Sprintf("%d %s %x", m.GetSeq(), m.GetRecordId(), m.GetExpectHash()))
		}
	}
	return out
}

// asOlderDevice strips a request's hashes, as an older device sends it.
func asOlderDevice(r *pb.SyncRequest) {
	r.Expected = nil
	for _, m := range r.GetMutations() {
		m.ExpectHash = nil
	}
}

// sameAsServer checks that the device holds record id exactly as the
// server's export has it: the deterministic encodings are equal byte for
// byte.
func sameAsServer(t *testing.T, e *testenv.Env, d *syncer.Device, id string) {
	t.Helper()
	admin, ctx := e.Admin()
	_ = admin
	var want *pb.Record
	for _, r := range testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{}) {
		if r.GetId() == id {
			want = r
		}
	}
	if want == nil {
		t.Fatalf("%s: not in the server's export", id)
	}
	it, err := d.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.State != syncer.StateName(syncer.StateSynced) {
		t.Fatalf("%s: state %s, want synced", id, it.State)
	}
	det := proto.MarshalOptions{Deterministic: true}
	got, err := det.Marshal(it.Record)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := det.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, exp) {
		t.Fatalf("%s: the device's record differs from the server's:\n got %v\nwant %v", id, it.Record, want)
	}
}

// A visit, a household update, a new dispute and a dispute's transition,
// each synced, come back as echoes, not in full: the answer carries no
// record of them, and the device then holds each exactly as the server
// does (version, buckets and the server's time on the status history
// included).
func TestEchoOwnWritesComeBackAsEchoes(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member, mediator := e.Device(testenv.Member), e.Device(testenv.Mediator)
	testenv.Sync(t, member)
	testenv.Sync(t, mediator)

	check := func(d *syncer.Device, what, id string) {
		t.Helper()
		a.reset()
		rep := testenv.Sync(t, d)
		req, resp := a.last(t)
		if !expects(t, req, id) {
			t.Fatalf("%s: the request sent no hash for %s: %v", what, id, hashes(req))
		}
		if rec, echo := holds(resp, id); rec || !echo {
			t.Fatalf("%s: answer holds the record in full %v, as an echo %v; want an echo only (echoes %v)", what, rec, echo, resp.GetEchoes())
		}
		if rep.Echoed != 1 {
			t.Errorf("%s: report says %d echoed, want 1", what, rep.Echoed)
		}
		sameAsServer(t, e, d, id)
	}

	visit, err := member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").Set("met", "張大山").Set("needs", "屋頂漏水"))
	must(t, err)
	check(member, "new visit", visit)

	must(t, member.Update("H001", syncer.NewFields().Set("phone", "13900000009").Set("members", "5")))
	check(member, "household update", "H001")

	dispute, err := mediator.Create("dispute", syncer.NewFields().Set("category", "quarrel").Set("title", "宅基地界線").Set("parties", "張家,李家"))
	must(t, err)
	check(mediator, "new dispute", dispute)

	must(t, mediator.Transition(dispute, "mediating"))
	check(mediator, "dispute transition", dispute)

	must(t, mediator.Append(dispute, "notes", "雙方同意再談"))
	check(mediator, "dispute note", dispute)

	// The next write builds on the adopted record: it syncs as an echo too.
	must(t, member.Update(visit, syncer.NewFields().Set("follow_up", "下週再訪")))
	check(member, "visit amended", visit)
}

// A record another device changed before the push arrived is sent in
// full: the server's record is not what the device computed from its
// stale base. The device then holds the server's merge.
func TestEchoConcurrentChangeComesBackInFull(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member, sec := e.Device(testenv.Member), e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)

	must(t, member.Update("H001", syncer.NewFields().Set("phone", "13900000009")))
	must(t, sec.Update("H001", syncer.NewFields().Set("tags", "低保")))
	testenv.Sync(t, sec)
	a.reset()
	rep := testenv.Sync(t, member)
	req, resp := a.last(t)
	if !expects(t, req, "H001") {
		t.Fatalf("the request sent no hash for H001: %v", hashes(req))
	}
	if rec, echo := holds(resp, "H001"); !rec || echo {
		t.Fatalf("answer holds H001 in full %v, as an echo %v; want in full", rec, echo)
	}
	if rep.Echoed != 0 {
		t.Errorf("report says %d echoed, want 0", rep.Echoed)
	}
	sameAsServer(t, e, member, "H001")
	if got := field(t, member, "H001", "tags"); got != "低保" {
		t.Errorf("H001 tags = %q on the member's device, want the secretary's 低保", got)
	}
}

// A device that sends no hashes (an older app; an older server ignores
// them alike) gets its own writes back in full, as before echoes.
func TestEchoOlderDeviceGetsFullRecords(t *testing.T) {
	a := &answers{edit: asOlderDevice}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	visit, err := member.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-12-06"))
	must(t, err)
	must(t, member.Update("H002", syncer.NewFields().Set("members", "4")))
	a.reset()
	rep := testenv.Sync(t, member)
	_, resp := a.last(t)
	for _, id := range []string{visit, "H002"} {
		if rec, echo := holds(resp, id); !rec || echo {
			t.Fatalf("%s: answer holds it in full %v, as an echo %v; want in full", id, rec, echo)
		}
		sameAsServer(t, e, member, id)
	}
	if len(resp.GetEchoes()) != 0 || rep.Echoed != 0 {
		t.Errorf("answer has %d echoes, report %d; want none", len(resp.GetEchoes()), rep.Echoed)
	}
}

// A member's report is sent in full: the server fills in the village's
// mediators, which the member's device does not know (it holds no list
// of the village's people), so it could not compute the record, and
// sends no hash for it.
func TestEchoMemberReportComesBackInFull(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	report, err := member.Create("dispute", syncer.NewFields().Set("category", "hazard").Set("title", "橋面裂縫"))
	must(t, err)
	a.reset()
	testenv.Sync(t, member)
	req, resp := a.last(t)
	if expects(t, req, report) {
		t.Errorf("the request sent a hash for the report, which cannot be echoed")
	}
	if rec, echo := holds(resp, report); !rec || echo {
		t.Fatalf("answer holds the report in full %v, as an echo %v; want in full", rec, echo)
	}
	sameAsServer(t, e, member, report)
	if got := field(t, member, report, "mediators"); got == "" {
		t.Errorf("the report's mediators are empty on the device, want the village's")
	}
}

// A first sync read in pages: the visit written before it comes back as
// an echo in the first answer (which adds the device's own writes), and
// in full where a later page reaches its bucket (that call sends no hash:
// its push is done). The device ends holding it as the server does.
func TestEchoLaterPageSendsTheRecordInFull(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member, func(o *syncer.Options) { o.PageSize = 1 })
	visit, err := member.Create("visit", syncer.NewFields().Set("household_id", "H003").Set("visited_on", "2026-12-06"))
	must(t, err)
	a.reset()
	rep := testenv.Sync(t, member)
	a.mu.Lock()
	reqs, resps := a.reqs, a.resps
	a.mu.Unlock()
	if len(resps) < 3 {
		t.Fatalf("%d calls, want a paged sync", len(resps))
	}
	if _, echo := holds(resps[0], visit); !echo || !expects(t, reqs[0], visit) {
		t.Fatalf("first answer: echo of the visit %v, want one (echoes %v)", echo, resps[0].GetEchoes())
	}
	full := false
	for i, resp := range resps[1:] {
		if expects(t, reqs[i+1], visit) {
			t.Errorf("call %d sent a hash for the visit again", i+2)
		}
		if _, echo := holds(resp, visit); echo {
			t.Errorf("call %d: echoed the visit without a hash", i+2)
		}
		if rec, _ := holds(resp, visit); rec {
			full = true
		}
	}
	if !full {
		t.Errorf("no later page carried the visit in full")
	}
	if rep.Echoed != 1 {
		t.Errorf("report says %d echoed, want 1", rep.Echoed)
	}
	sameAsServer(t, e, member, visit)
}

// The other kinds' usual writes come back as echoes too: a member's
// event, need (with a note) and project (started, moved), a secretary's
// move of the need to taken (the need's taken_by is derived from the
// mover), a void (stamped with the server's time), and a secretary's
// household edit.
func TestEchoOtherKindsComeBackAsEchoes(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member, sec := e.Device(testenv.Member), e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	check := func(d *syncer.Device, what string, ids ...string) {
		t.Helper()
		a.reset()
		rep := testenv.Sync(t, d)
		req, resp := a.last(t)
		for _, id := range ids {
			if !expects(t, req, id) {
				t.Fatalf("%s: the request sent no hash for %s", what, id)
			}
			if rec, echo := holds(resp, id); rec || !echo {
				t.Fatalf("%s: %s in full %v, as an echo %v; want an echo only", what, id, rec, echo)
			}
			sameAsServer(t, e, d, id)
		}
		if rep.Echoed != len(ids) {
			t.Errorf("%s: report says %d echoed, want %d", what, rep.Echoed, len(ids))
		}
	}
	event, err := member.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-12-06").Set("subject", "黨員大會"))
	must(t, err)
	need, err := member.Create("need", syncer.NewFields().Set("household_id", "H001").Set("category", "housing").Set("summary", "屋頂漏水"))
	must(t, err)
	must(t, member.Append(need, "notes", "下雨天更嚴重"))
	project, err := member.Create("project", syncer.NewFields().Set("title", "修村道").Set("households", "H001,H002"))
	must(t, err)
	must(t, member.Transition(project, "in_progress"))
	check(member, "member's event, need and project", event, need, project)

	testenv.Sync(t, sec) // the secretary reads the need
	must(t, sec.TransitionWith(need, "taken", syncer.NewFields().Set("help", "村委會派人")))
	must(t, sec.Update("H002", syncer.NewFields().Set("address", "張家塆2號之1")))
	check(sec, "secretary's need taken and household edit", need, "H002")

	testenv.Sync(t, member)
	must(t, member.Void(event, "記錯日子"))
	check(member, "void", event)
}

// A push whose answer was lost, sent again with a later mutation of the
// same record, is a retry: the record's hash moved to the later mutation
// and the first goes without it, which the server leaves out of the
// content it tells a retry by. Nothing is renumbered, and the record
// comes back as an echo.
func TestEchoRetryWithTheHashMovedIsARetry(t *testing.T) {
	a := &answers{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(a.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)

	must(t, member.Update("H001", syncer.NewFields().Set("phone", "13900000009")))
	a.reset()
	a.mu.Lock()
	a.lose = true
	a.mu.Unlock()
	if _, err := member.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "the answer was lost on the way") {
		t.Fatalf("sync whose answer is lost: %v, want the server unreachable", err)
	}
	first, _ := a.last(t)
	if len(first.GetMutations()) != 1 || !expects(t, first, "H001") {
		t.Fatalf("the first push: %v, want H001's update with its hash", first.GetMutations())
	}

	must(t, member.Update("H001", syncer.NewFields().Set("members", "6")))
	rep := testenv.Sync(t, member)
	req, resp := a.last(t)
	muts := req.GetMutations()
	if len(muts) != 2 || muts[0].GetSeq() != first.GetMutations()[0].GetSeq() || len(muts[0].GetExpectHash()) != 0 || !expects(t, req, "H001") {
		t.Fatalf("the second push: %v, want the first update again without its hash, then the second with H001's", muts)
	}
	if resp.GetNumbering() != pb.Numbering_NUMBERING_UNSPECIFIED || len(resp.GetResults()) != 2 {
		t.Fatalf("numbering %v, results %v; want both answered, numbers agreeing", resp.GetNumbering(), resp.GetResults())
	}
	if rec, echo := holds(resp, "H001"); rec || !echo {
		t.Fatalf("answer holds H001 in full %v, as an echo %v; want an echo only", rec, echo)
	}
	if rep.Applied != 2 || rep.Echoed != 1 {
		t.Errorf("report: %d applied, %d echoed; want 2 and 1", rep.Applied, rep.Echoed)
	}
	sameAsServer(t, e, member, "H001")
	if field(t, member, "H001", "phone") != "13900000009" || field(t, member, "H001", "members") != "6" {
		t.Errorf("H001 lacks one of the updates")
	}
}
