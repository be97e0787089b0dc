package sim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Check verifies the invariants after Run; it reports every violation
// found, each naming the seed.
func (w *World) Check() {
	t, seed := w.t, w.cfg.Seed
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := w.env
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("seed %d: "+format+" (replay: go test ./sim -run TestSim -seed %d -v, or SIM_SEED=N go test ./... -run Sim)", append(append([]any{seed}, args...), seed)...)
	}

	// 1. Every queued mutation was processed exactly once: the server's
	// last answered number for the device is the number of mutations the
	// device queued (after a restore, what the server kept of them plus
	// what the device sent again: reconcile), each number answered once,
	// nothing is pending, and rejections are listed.
	admin, actx := e.Admin()
	devs, err := admin.ListDevices(actx, &pb.ListDevicesRequest{PageSize: 1000})
	if err != nil {
		t.Fatalf("seed %d: list devices: %v", seed, err)
	}
	lastSeq := map[string]uint64{}
	for _, d := range devs.GetDevices() {
		lastSeq[d.GetId()] = d.GetLastSeq()
	}
	for _, v := range w.devs {
		if v.revoked {
			continue
		}
		id, err := v.d.Identity()
		if err != nil {
			t.Fatalf("seed %d: identity: %v", seed, err)
		}
		st, err := v.d.Status()
		if err != nil {
			t.Fatalf("seed %d: status: %v", seed, err)
		}
		if st.Pending != 0 {
			fail("%s still has %d pending mutations after the final syncs", v.user, st.Pending)
		}
		if got := lastSeq[id.DeviceID]; got != uint64(v.queued) {
			fail("%s queued %d mutations that must land; the server processed %d", v.user, v.queued, got)
		}
		last, hashes := w.answered(id.DeviceID)
		for seq := uint64(1); seq <= last; seq++ {
			if hashes[seq] == nil {
				fail("%s: the server's last number is %d but it kept no answer for %d", v.user, last, seq)
				break
			}
		}
		if uint64(len(hashes)) != last {
			fail("%s: the server kept %d answers for numbers 1..%d", v.user, len(hashes), last)
		}
		rejs, err := v.d.Rejections()
		if err != nil {
			t.Fatalf("seed %d: rejections: %v", seed, err)
		}
		rejected := map[string]int{} // record -> rejected appends
		for _, r := range rejs {
			if r.Reason == "" || r.Code == "" {
				fail("%s: a rejection without code or reason: %+v", v.user, r)
			}
			if r.Op == "append" {
				rejected[r.RecordID]++
			}
		}
		// Exactly-once effect: each appended text is on the server once,
		// or its append was rejected.
		for rec, texts := range v.appends {
			srv, err := e.Store.Record(ctx, rec)
			present := 0
			for _, text := range texts {
				n := 0
				if err == nil {
					for _, en := range srv.GetEntries() {
						if en.GetText() == text {
							n++
						}
					}
				}
				if n > 1 {
					fail("note %q on %s is there %d times", text, rec, n)
				}
				present += n
			}
			if present+rejected[rec] != len(texts) {
				fail("%s appended %d notes to %s: %d on the server, %d rejected", v.user, len(texts), rec, present, rejected[rec])
			}
		}
	}

	// What the store keeps in memory (bucket heads, members' links) agrees
	// with its database: the checks below read the database itself.
	if err := e.Store.VerifyMemory(ctx); err != nil {
		fail("store memory: %v", err)
	}

	// 2. Every replica equals the server's state for its scope.
	for _, v := range w.devs {
		if v.revoked {
			continue
		}
		scope, err := e.Server.ScopeOf(store.FromDisk(ctx), v.user)
		if err != nil {
			t.Fatalf("seed %d: scope: %v", seed, err)
		}
		want := map[string]*pb.Record{}
		for _, b := range scope {
			rows, err := e.Store.Pull(store.FromDisk(ctx), b, 0, 1<<30)
			if err != nil {
				t.Fatalf("seed %d: pull: %v", seed, err)
			}
			for _, row := range rows {
				if row.Gone {
					continue
				}
				r := &pb.Record{}
				if err := proto.Unmarshal(row.Body, r); err != nil {
					t.Fatal(err)
				}
				want[r.GetId()] = r
			}
		}
		items, err := v.d.List("")
		if err != nil {
			t.Fatalf("seed %d: list: %v", seed, err)
		}
		have := map[string]bool{}
		for _, it := range items {
			if it.Version == 0 { // made here, refused by the server: kept for the user
				if it.State != "rejected" {
					fail("%s holds %s never sent yet not pending (%s)", v.user, it.ID, it.State)
				}
				continue
			}
			have[it.ID] = true
			srv, ok := want[it.ID]
			if !ok {
				fail("%s holds %s %s outside its scope", v.user, it.Kind, it.ID)
				continue
			}
			if !proto.Equal(it.Record, srv) {
				fail("%s's replica of %s differs from the server:\ndevice %v\nserver %v", v.user, it.ID, it.Record, srv)
				return // the first differing record is enough
			}
		}
		for id := range want {
			if !have[id] {
				fail("%s lacks %s, which is in its scope", v.user, id)
			}
		}
	}

	// 3. The changelog holds each change once, in order, and replaying it
	// by version reaches the server's state.
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Relay().WaitPublished(ctx, last); err != nil {
		t.Fatalf("seed %d: relay: %v", seed, err)
	}
	counts, changes := testenv.ReadStream(t, e.JS)
	if uint64(len(changes)) != last {
		fail("the stream holds %d changes, the server %d", len(changes), last)
	}
	// Change by change: ids, headers, lineage and bodies (a restored
	// server's stream rebuilt under its new lineage).
	if err := testenv.StreamMatchesDB(ctx, e.JS, e.Store); err != nil {
		fail("the stream does not match the database: %v", err)
	}
	replay := map[string]*pb.Record{}
	for i, c := range changes {
		if c.GetSeq() != uint64(i+1) || counts[c.GetChangeId()] != 1 {
			fail("stream message %d holds change %d, seen %d times", i+1, c.GetSeq(), counts[c.GetChangeId()])
			break
		}
		// Units, people, links, device health and refused events travel
		// beside the records (exactly one body each); only the records
		// replay into the server's records.
		r := c.GetRecord()
		if r == nil {
			if c.GetUnit() == nil && c.GetPerson() == nil && c.GetLink() == nil && c.GetDevice() == nil && c.GetRefused() == nil {
				fail("change %d carries nothing", c.GetSeq())
			}
			continue
		}
		if c.GetUnit() != nil || c.GetPerson() != nil || c.GetLink() != nil || c.GetDevice() != nil || c.GetRefused() != nil {
			fail("change %d carries a record and more", c.GetSeq())
		}
		if r.GetVersion() != c.GetSeq() {
			fail("change %d carries %s at version %d: a record's version is the change that made it", c.GetSeq(), r.GetId(), r.GetVersion())
		}
		if cur := replay[r.GetId()]; cur == nil || r.GetVersion() > cur.GetVersion() {
			replay[r.GetId()] = r
		}
	}
	var all []*pb.Record
	var decodeErr error
	err = e.Store.Export(ctx, 0, nil, 1<<30, func(_ uint64, body []byte) bool {
		r := &pb.Record{}
		if decodeErr = proto.Unmarshal(body, r); decodeErr != nil {
			return false
		}
		all = append(all, r)
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if len(all) != len(replay) {
		fail("replaying the stream gives %d records, the server has %d", len(replay), len(all))
	}
	chains := map[string][]*pb.Record{}
	for _, r := range all {
		if !proto.Equal(replay[r.GetId()], r) {
			fail("replaying the stream gives another %s than the server", r.GetId())
		}
		if r.GetKind() == pb.Kind_KIND_EVENT {
			chains[r.GetOriginDeviceId()] = append(chains[r.GetOriginDeviceId()], r)
		}
	}

	// 3b. The org travels beside the records: replaying the stream's link
	// changes gives the server's links, its unit changes each grid's
	// village now, its device changes each device's revocation.
	links, gridVillage, revoked := map[string]string{}, map[string]string{}, map[string]bool{}
	for _, c := range changes {
		switch {
		case c.GetLink() != nil:
			if l := c.GetLink(); l.GetMemberId() == "" {
				delete(links, l.GetHouseholdId())
			} else {
				links[l.GetHouseholdId()] = l.GetMemberId()
			}
		case c.GetUnit().GetUnit().GetKind() == pb.UnitKind_UNIT_KIND_GRID:
			gridVillage[c.GetUnit().GetUnit().GetId()] = c.GetUnit().GetVillageId()
		case c.GetDevice() != nil:
			revoked[c.GetDevice().GetDeviceId()] = c.GetDevice().GetRevokedMs() != 0
		}
	}
	linked := 0
	for _, m := range w.members {
		hs, err := e.Store.LinkedHouseholds(ctx, m)
		if err != nil {
			t.Fatalf("seed %d: links of %s: %v", seed, m, err)
		}
		for _, h := range hs {
			if links[h] != m {
				fail("the server links %s to %s, the stream's link changes to %q", h, m, links[h])
			}
		}
		linked += len(hs)
	}
	if linked != len(links) {
		fail("the stream's link changes link %d households, the server %d", len(links), linked)
	}
	for g, v := range w.grids {
		if gridVillage[g] != v {
			fail("grid %s lies in %s, the stream's unit changes say %q", g, v, gridVillage[g])
		}
	}
	for _, d := range devs.GetDevices() {
		if got, ok := revoked[d.GetId()]; !ok || got != (d.GetRevokedMs() != 0) {
			fail("device %s: revoked_ms %d, the stream's device changes say revoked=%v (present %v)", d.GetId(), d.GetRevokedMs(), got, ok)
		}
	}

	// 4. Each household lies in the village its grid lies in now (grids
	// move), and each visit where its household lies.
	for _, r := range all {
		hid := r.GetId()
		switch r.GetKind() {
		case pb.Kind_KIND_HOUSEHOLD:
		case pb.Kind_KIND_VISIT:
			hid = r.GetFields()["household_id"].GetValue()
		default:
			continue
		}
		want := domain.VillageBucket(w.grids[w.gridOf[hid]])
		var villages []string
		for _, b := range r.GetBuckets() {
			if strings.HasPrefix(b, domain.VillageBucket("")) {
				villages = append(villages, b)
			}
		}
		if len(villages) != 1 || villages[0] != want {
			fail("%s %s (household %s, grid %s) is filed in %v, want %s", domain.KindName(r.GetKind()), r.GetId(), hid, w.gridOf[hid], villages, want)
		}
	}

	// 5. Each device's event chain verifies, the events the server refused
	// (a member whose grid moved, offline, still files in the old village)
	// standing in their place as the server kept them; concurrent edits are
	// conflicts.
	refused, err := e.Store.RefusedLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for dev, evs := range chains {
		if err := domain.VerifyChain(evs, refused[dev]...); err != nil {
			fail("event chain of %s: %v", dev, err)
		}
	}
	for _, key := range sortedKeys(w.frozen) {
		rec, field, _ := strings.Cut(key, "/")
		vals := strings.Split(w.frozen[key], "|")
		if w.anyRejected(rec) || w.frozenLost[key] {
			continue // one side lost its permission before sending: no conflict to keep
		}
		srv, err := e.Store.Record(ctx, rec)
		if err != nil {
			fail("record %s: %v", rec, err)
			continue
		}
		cur := srv.GetFields()[field].GetValue()
		other := vals[0]
		if cur == vals[0] {
			other = vals[1]
		} else if cur != vals[1] {
			fail("%s.%s is %q, neither concurrent edit (%q)", rec, field, cur, vals)
			continue
		}
		found := false
		for _, c := range srv.GetConflicts() {
			found = found || (c.GetField() == field && c.GetValue() == other)
		}
		if !found {
			fail("the concurrent edit %s.%s = %q was lost: no conflict keeps it (conflicts %v)", rec, field, other, srv.GetConflicts())
		}
	}

	// 6. Needs, projects, reports, voids, settles and relinks
	// (check_field.go).
	w.checkField(ctx, fail, all, changes)
}

// anyRejected reports whether some device holds a rejected write of rec.
func (w *World) anyRejected(rec string) bool {
	for _, v := range w.devs {
		if v.revoked {
			return true // its writes may be gone with it
		}
		rejs, _ := v.d.Rejections()
		for _, r := range rejs {
			if r.RecordID == rec {
				return true
			}
		}
	}
	return false
}

// Close stops the world.
func (w *World) Close() {
	for _, v := range w.devs {
		v.d.Close()
	}
	w.env.Stop()
}

func (s Stats) String() string {
	return fmt.Sprintf("%d devices, %d steps, %d writes, %d syncs (%d failed), %d restarts, %d server restores, %d phone copies, %d phone restores, %d app kills, %d reassignments, %d mediator changes, %d grid moves, %d revocations, %.1f device-days; "+
		"%d needs, %d reports, %d projects, %d status moves, %d voids, %d settles, %d relinks by secretaries",
		s.Devices, s.Steps, s.Writes, s.Syncs, s.FailedSyncs, s.Restarts, s.ServerRestores, s.PhoneCopies, s.PhoneRestores, s.AppKills, s.Reassigns, s.MediatorChanges, s.GridMoves, s.Revokes, s.DeviceDays,
		s.Needs, s.Reports, s.Projects, s.Moves, s.Voids, s.Settles, s.Relinks)
}
