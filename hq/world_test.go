package hq

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// world records a stream of changes as syncd would publish them, and
// keeps what the tables must hold, computed on the side from the final
// state of each thing (not through the model's code).
type world struct {
	seq     uint64
	now     int64
	changes []*pb.Change

	recs      map[string]*pb.Record // the latest state
	firstMs   map[string]int64      // committed_ms of a record's first change
	lastMs    map[string]int64      // of its last
	where     map[string][2]string  // village, town
	units     map[string]*pb.Change // last change of each
	people    map[string]*pb.Change
	links     map[string]*pb.Change
	linkHist  []*pb.Change
	devices   map[string]*pb.Change
	refused   map[string]*pb.Change
	villageOf map[string]string // grid -> village
	townOf    map[string]string // village -> town
}

func newWorld() *world {
	return &world{now: 1_780_000_000_000, recs: map[string]*pb.Record{}, firstMs: map[string]int64{}, lastMs: map[string]int64{},
		where: map[string][2]string{}, units: map[string]*pb.Change{}, people: map[string]*pb.Change{}, links: map[string]*pb.Change{},
		devices: map[string]*pb.Change{}, refused: map[string]*pb.Change{}, villageOf: map[string]string{}, townOf: map[string]string{}}
}

func (w *world) next(region string) *pb.Change {
	w.seq++
	w.now += 1000 + int64(w.seq%7)*333
	c := &pb.Change{Seq: w.seq, ChangeId: fmt.Sprintf("L-%d", w.seq), CommittedMs: w.now, Region: region, DeviceId: "dev-1", UserId: "u-1"}
	w.changes = append(w.changes, c)
	return c
}

func (w *world) unit(id string, kind pb.UnitKind, parent, name string) {
	village, town := "", ""
	switch kind {
	case pb.UnitKind_UNIT_KIND_TOWN:
		town = id
	case pb.UnitKind_UNIT_KIND_VILLAGE:
		village, town = id, parent
		w.townOf[id] = parent
	case pb.UnitKind_UNIT_KIND_GRID:
		village, town = parent, w.townOf[parent]
		w.villageOf[id] = parent
	}
	c := w.next(town)
	c.Unit = &pb.UnitState{Unit: &pb.Unit{Id: id, Kind: kind, ParentId: parent, Name: name}, VillageId: village, TownId: town}
	w.units[id] = c
}

func (w *world) person(id, name string, role pb.Role, unit, village, town string, disabled int64) {
	c := w.next(town)
	c.Person = &pb.PersonState{Id: id, Name: name, Role: role, UnitId: unit, VillageId: village, TownId: town, DisabledMs: disabled}
	w.people[id] = c
}

func (w *world) link(household, member, by string) {
	prev := w.links[household].GetLink().GetMemberId()
	village := w.villageOf[w.recs[household].GetFields()["grid_id"].GetValue()]
	c := w.next(w.townOf[village])
	c.Link = &pb.LinkState{HouseholdId: household, MemberId: member, PreviousMemberId: prev, VillageId: village, TownId: w.townOf[village], By: by}
	w.links[household] = c
	w.linkHist = append(w.linkHist, c)
	w.set(household, map[string]string{"member_id": member})
}

func (w *world) device(id, user, version string, pending uint32, revoked int64) {
	c := w.next("none")
	c.Device = &pb.DeviceHealth{DeviceId: id, UserId: user, Name: "华为 " + id, AppVersion: version, EnrolledMs: 1_770_000_000_000,
		LastSeenMs: w.now, PendingCount: pending, RevokedMs: revoked, LastSeq: uint64(pending) + 10}
	w.devices[id] = c
}

func (w *world) refuse(device string, dseq uint64) {
	c := w.next("none")
	c.Refused = &pb.RefusedEvent{DeviceId: device, UserId: "u-1", RecordId: fmt.Sprintf("ev-refused-%d", dseq), DeviceSeq: dseq,
		PrevHash: strings.Repeat("a", 64), Hash: strings.Repeat("b", 64), Code: "FORBIDDEN", Reason: "村外"}
	w.refused[fmt.Sprintf("%s/%d", device, dseq)] = c
}

// create makes a record in village.
func (w *world) create(kind pb.Kind, id, village string, fields map[string]string) {
	r := &pb.Record{Id: id, Kind: kind, Fields: map[string]*pb.FieldValue{}, AuthorId: "u-" + village, OriginDeviceId: "dev-" + village}
	w.recs[id] = r
	w.where[id] = [2]string{village, w.townOf[village]}
	if m := domain.MachineOf(kind); m != nil {
		fields["status"] = m.Start
		r.History = append(r.History, &pb.StatusChange{From: "", To: m.Start, AuthorId: r.AuthorId, AtMs: w.now + 1000})
	}
	w.set(id, fields)
}

// set changes fields of a record and publishes its new state.
func (w *world) set(id string, fields map[string]string) {
	r := proto.Clone(w.recs[id]).(*pb.Record)
	if r.Fields == nil {
		r.Fields = map[string]*pb.FieldValue{}
	}
	c := w.next(w.where[id][1])
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.Fields[k] = &pb.FieldValue{Value: fields[k], Hlc: strconv.FormatInt(c.CommittedMs, 10)}
	}
	w.publish(c, r)
}

func (w *world) publish(c *pb.Change, r *pb.Record) {
	r.Version = c.Seq
	v, t := w.where[r.Id][0], w.where[r.Id][1]
	r.Buckets = domain.RecordBuckets(r, v, t)
	c.Record = r
	w.recs[r.Id] = r
	if _, ok := w.firstMs[r.Id]; !ok {
		w.firstMs[r.Id] = c.CommittedMs
	}
	w.lastMs[r.Id] = c.CommittedMs
}

func (w *world) move(id, to string) {
	r := proto.Clone(w.recs[id]).(*pb.Record)
	c := w.next(w.where[id][1])
	from := r.Fields["status"].GetValue()
	r.Fields["status"] = &pb.FieldValue{Value: to}
	r.History = append(r.History, &pb.StatusChange{From: from, To: to, AuthorId: "u-x", AtMs: c.CommittedMs})
	if r.Kind == pb.Kind_KIND_DISPUTE && to == "closed" {
		r.Fields["result"] = &pb.FieldValue{Value: from}
	}
	w.publish(c, r)
}

func (w *world) entry(id, field, text string) {
	r := proto.Clone(w.recs[id]).(*pb.Record)
	c := w.next(w.where[id][1])
	r.Entries = append(r.Entries, &pb.Entry{Field: field, Text: text, AuthorId: "u-e", Hlc: strconv.FormatInt(c.CommittedMs, 10)})
	w.publish(c, r)
}

func (w *world) void(id, reason string) {
	r := proto.Clone(w.recs[id]).(*pb.Record)
	c := w.next(w.where[id][1])
	r.Void = &pb.Void{Reason: reason, AuthorId: "u-v", AtMs: c.CommittedMs}
	w.publish(c, r)
}

// sampleWorld records a small city's life: the org imported and changed,
// households linked and relinked, records of every kind moved through
// their statuses, with notes, voids, device health and refused events.
func sampleWorld(seed uint64, households int) *world { return sampleWorldOf(seed, households, "") }

// sampleWorldOf is sampleWorld with every id starting with p (a region's
// prefix, "a-"), so that two regions' worlds hold no id in common.
func sampleWorldOf(seed uint64, households int, p string) *world {
	w := newWorld()
	rng := rand.New(rand.NewPCG(seed, 7))
	w.unit(p+"T01", pb.UnitKind_UNIT_KIND_TOWN, "", "城关镇")
	w.unit(p+"T02", pb.UnitKind_UNIT_KIND_TOWN, "", "河口镇")
	w.unit(p+"V01", pb.UnitKind_UNIT_KIND_VILLAGE, p+"T01", "东湖村")
	w.unit(p+"V02", pb.UnitKind_UNIT_KIND_VILLAGE, p+"T02", "柳林村")
	w.unit(p+"G01", pb.UnitKind_UNIT_KIND_GRID, p+"V01", "第一网格")
	w.unit(p+"G02", pb.UnitKind_UNIT_KIND_GRID, p+"V02", "第二网格")
	w.unit(p+"V01", pb.UnitKind_UNIT_KIND_VILLAGE, p+"T01", "东湖社区") // renamed
	w.person(p+"M01", "王芳", pb.Role_ROLE_MEMBER, p+"G01", p+"V01", p+"T01", 0)
	w.person(p+"M02", "李强", pb.Role_ROLE_MEMBER, p+"G02", p+"V02", p+"T02", 0)
	w.person(p+"S01", "张伟", pb.Role_ROLE_SECRETARY, p+"V01", p+"V01", p+"T01", 0)
	w.person(p+"TS1", "刘洋", pb.Role_ROLE_SECRETARY, p+"T01", "", p+"T01", 0)
	w.person(p+"D01", "陈静", pb.Role_ROLE_MEDIATOR, p+"V01", p+"V01", p+"T01", 0)
	w.person(p+"H01", "赵敏", pb.Role_ROLE_HQ, "", "", "", 0)
	w.device(p+"dev-a", p+"M01", "1.0.0", 0, 0)
	w.device(p+"dev-b", p+"M02", "1.0.0", 3, 0)
	grids := []string{p + "G01", p + "G02"}
	members := map[string]string{p + "G01": p + "M01", p + "G02": p + "M02"}
	var hh []string
	for i := range households {
		g := grids[i%2]
		id := p + fmt.Sprintf("H%03d", i)
		hh = append(hh, id)
		w.create(pb.Kind_KIND_HOUSEHOLD, id, w.villageOf[g], map[string]string{"grid_id": g, "head": fmt.Sprintf("户主%d", i),
			"address": fmt.Sprintf("%d号", i), "members": strconv.Itoa(1 + i%5), "tags": "低保"})
		if i%4 != 3 {
			w.link(id, members[g], "admin:import")
		}
	}
	w.person(p+"M01", "王芳", pb.Role_ROLE_MEMBER, p+"G01", p+"V01", p+"T01", w.now) // disabled
	w.device(p+"dev-a", p+"M01", "1.1.0", 0, 0)
	var visits, disputes, needs, projects, events []string
	for i := range households * 3 {
		h := hh[rng.IntN(len(hh))]
		v := w.where[h][0]
		switch rng.IntN(8) {
		case 0, 1, 2:
			id := p + fmt.Sprintf("vis-%d", i)
			visits = append(visits, id)
			w.create(pb.Kind_KIND_VISIT, id, v, map[string]string{"household_id": h,
				"visited_on": fmt.Sprintf("2026-%02d-%02d", 1+rng.IntN(12), 1+rng.IntN(28)), "met": "户主", "help": "送米"})
		case 3:
			id := p + fmt.Sprintf("dis-%d", i)
			disputes = append(disputes, id)
			w.create(pb.Kind_KIND_DISPUTE, id, v, map[string]string{"village_id": v, "category": domain.DisputeCategories[rng.IntN(5)],
				"title": "邻里纠纷", "household_id": h, "occurred_on": "2026-03-04"})
		case 4:
			id := p + fmt.Sprintf("need-%d", i)
			needs = append(needs, id)
			w.create(pb.Kind_KIND_NEED, id, v, map[string]string{"village_id": v, "household_id": h, "category": "medical", "summary": "看病难"})
		case 5:
			id := p + fmt.Sprintf("proj-%d", i)
			projects = append(projects, id)
			w.create(pb.Kind_KIND_PROJECT, id, v, map[string]string{"village_id": v, "title": "修路", "households": h + ", " + hh[0], "planned_on": "2026-05-01"})
		case 6:
			id := p + fmt.Sprintf("ev-%d", i)
			events = append(events, id)
			w.create(pb.Kind_KIND_EVENT, id, v, map[string]string{"village_id": v, "type": domain.EventTypes[rng.IntN(5)], "occurred_on": "2026-04-0" + strconv.Itoa(1+rng.IntN(9)),
				"subject": "三会一课", "service_mode": "direct", "hash": strings.Repeat("c", 64), "prev_hash": strings.Repeat("d", 64)})
		case 7:
			w.set(h, map[string]string{"head": fmt.Sprintf("新户主%d", i)})
		}
	}
	for i, id := range visits {
		switch i % 5 {
		case 0:
			w.set(id, map[string]string{"follow_up": "下月再访"})
		case 1:
			w.void(id, "重复录入")
		}
	}
	for i, id := range disputes {
		if i%4 == 3 {
			continue
		}
		w.move(id, "mediating")
		w.entry(id, "sessions", "第一次调解")
		w.entry(id, "notes", "双方到场")
		if i%4 == 2 {
			w.move(id, "failed")
			w.move(id, "referred")
		} else {
			w.set(id, map[string]string{"level": "village", "agreed_on": "2026-03-09", "agreement": "赔偿"})
			w.move(id, "agreed")
		}
		w.entry(id, "notes", "回访")
		if i%2 == 0 {
			w.move(id, "closed")
		}
	}
	for i, id := range needs {
		if i%3 == 0 {
			w.move(id, "taken")
			w.set(id, map[string]string{"taken_by": p + "M01", "help": "联系医院"})
		}
		if i%3 != 2 {
			w.move(id, "resolved")
		}
		w.entry(id, "notes", "已处理")
	}
	for i, id := range projects {
		w.move(id, "in_progress")
		w.entry(id, "progress", "开工")
		if i%2 == 0 {
			w.set(id, map[string]string{"outcome": "完工"})
			w.move(id, "completed")
		}
	}
	for i, id := range events {
		if i%3 == 0 {
			w.void(id, "误报")
		}
	}
	for i, h := range hh {
		switch i % 6 {
		case 0:
			w.link(h, "", "secretary:S01") // unlinked
		case 1:
			w.link(h, p+"M02", "admin:ops")
		case 5:
			w.void(h, "户已迁出")
		}
	}
	w.refuse(p+"dev-a", 5)
	w.refuse(p+"dev-a", 9)
	w.device(p+"dev-b", p+"M02", "1.1.0", 0, w.now)
	w.unit(p+"G02", pb.UnitKind_UNIT_KIND_GRID, p+"V02", "第二网格（新）")
	return w
}

// dump reads a table as sorted lines of its columns.
func dump(t testing.TB, m *Model, table string) []string {
	t.Helper()
	return dumpWhere(t, m, table, "1")
}

// dumpWhere is dump of the rows where cond holds (args its parameters).
func dumpWhere(t testing.TB, m *Model, table, cond string, args ...any) []string {
	t.Helper()
	rows, err := m.DB().Query("SELECT * FROM "+table+" WHERE "+cond, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteString("|")
			}
			fmt.Fprintf(&b, "%s=%v", cols[i], v)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// dataTables are the tables compared between models (meta aside).
var dataTables = []string{"units", "people", "links", "link_history", "households", "visits", "disputes", "needs",
	"projects", "events", "status_history", "entries", "devices", "refused_events"}

// sameTables fails unless a and b hold the same rows in every table.
func sameTables(t testing.TB, a, b *Model) {
	t.Helper()
	for _, table := range dataTables {
		x, y := dump(t, a, table), dump(t, b, table)
		if strings.Join(x, "\n") != strings.Join(y, "\n") {
			t.Errorf("table %s differs: %d rows against %d\n%s", table, len(x), len(y), firstDiff(x, y))
		}
	}
}

func firstDiff(x, y []string) string {
	for i := range max(len(x), len(y)) {
		var a, b string
		if i < len(x) {
			a = x[i]
		}
		if i < len(y) {
			b = y[i]
		}
		if a != b {
			return "first difference:\n  " + a + "\n  " + b
		}
	}
	return ""
}
