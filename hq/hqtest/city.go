// Package hqtest builds HQ read-model databases (hq/schema.sql) for tests
// and benchmarks: a whole city of the size DOMAIN.md gives for Macheng
// (19 towns, 436 villages, 4,997 grids, 22,042 members linking 113,522
// households) with a year of monthly visits, link changes, disputes,
// needs, projects, events and devices, written straight into the tables
// (not through the changelog: a city's year takes seconds this way, and
// hours as changes). The same seed gives the same city, row for row.
package hqtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fieldsync/fieldsync/hq"
)

// Spec is the size and time span of a city.
type Spec struct {
	Towns, Villages, Grids, Members, Households int
	// Months of visits, ending with Last (YYYY-MM).
	Months int
	Last   string
	// NowMs is "now" for the city: late in Last, China time. Rows are
	// dated before it.
	NowMs int64
	Seed  uint64
}

// Macheng is the city of DOMAIN.md: 19 towns, 436 villages, 4,997 grids,
// 22,042 members, 113,522 households, 12 months of visits to 2026-11.
func Macheng() Spec {
	return Spec{Towns: 19, Villages: 436, Grids: 4997, Members: 22042, Households: 113522,
		Months: 12, Last: "2026-11", NowMs: time.Date(2026, 11, 29, 18, 0, 0, 0, china).UnixMilli(), Seed: 1}
}

// Scaled is Macheng scaled by f (0.01: a hundredth), at least one of each
// unit.
func Scaled(f float64) Spec {
	s := Macheng()
	sc := func(n int) int { return max(1, int(float64(n)*f+0.5)) }
	s.Households, s.Members, s.Grids = sc(s.Households), sc(s.Members), sc(s.Grids)
	s.Grids = min(s.Grids, s.Members)
	s.Villages = min(sc(s.Villages), s.Grids)
	s.Towns = min(sc(s.Towns), s.Villages)
	return s
}

func (s Spec) check() error {
	switch {
	case s.Towns < 1 || s.Villages < s.Towns || s.Grids < s.Villages || s.Members < s.Grids:
		return fmt.Errorf("hqtest: spec: want 1 <= towns (%d) <= villages (%d) <= grids (%d) <= members (%d)", s.Towns, s.Villages, s.Grids, s.Members)
	case s.Households < 1:
		return fmt.Errorf("hqtest: spec: households %d: want at least 1", s.Households)
	case s.Months < 1 || s.Months > 120:
		return fmt.Errorf("hqtest: spec: months %d: want 1 to 120", s.Months)
	case s.NowMs <= 0:
		return errors.New("hqtest: spec: NowMs: want a time")
	}
	if _, err := time.ParseInLocation("2006-01", s.Last, china); err != nil {
		return fmt.Errorf("hqtest: spec: last month %q: want YYYY-MM", s.Last)
	}
	return nil
}

// City is what Fill wrote: counts, and sample units to drill into (the
// busiest town, one of its villages, one of that village's grids).
type City struct {
	Spec
	Rows                         map[string]int // table -> rows written
	Linked                       int            // households linked now
	Visits                       int            // visits (voided included)
	Town, Village, Grid, Member  string
	MonthsList                   []string // the months with visits, oldest first
	Elapsed                      time.Duration
	VisitedLast, LinkedEndOfLast int // coverage of Last, computed while generating (voided visits and households left out)
}

var china = time.FixedZone("CST", 8*3600)

// Create makes a new read-model database at path (hq.Open: its schema,
// migrations and mark) and returns it opened with one connection, set for
// a bulk load: no journal, no fsync, a 256 MiB page cache. Build switches
// the file back to WAL (as the model runs it) once filled.
func Create(ctx context.Context, path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("hqtest: %s exists: want a new file", path)
	}
	m, err := hq.Open(path)
	if err != nil {
		return nil, err
	}
	if err := m.Close(); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)&_pragma=temp_store(memory)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// Build creates path with the schema and fills it with the city of spec.
func Build(ctx context.Context, path string, spec Spec) (*City, error) {
	db, err := Create(ctx, path)
	if err != nil {
		return nil, err
	}
	c, err := Fill(ctx, db, spec)
	if err == nil {
		_, err = db.ExecContext(ctx, `PRAGMA journal_mode=WAL`)
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return c, err
}

// Text of the city: simplified Chinese, as its users write.
var (
	townNames = []string{"宋埠镇", "歧亭镇", "白果镇", "中馆驿镇", "夫子河镇", "阎家河镇", "龟山镇", "盐田河镇", "张家畈镇", "木子店镇",
		"三河口镇", "黄土岗镇", "福田河镇", "顺河镇", "乘马岗镇", "鼓楼街道", "龙池桥街道", "南湖街道", "北门街道"}
	surnames  = []rune("张李王赵刘陈杨黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段")
	given     = []string{"国华", "秀英", "德明", "大山", "小河", "春梅", "秋菊", "冬生", "建国", "桂兰", "志强", "玉珍", "海涛", "淑芬", "文杰", "凤英", "红梅", "新民"}
	places    = []string{"家塆", "家湾", "家冲", "家畈", "家岗", "家咀"}
	tags      = []string{"", "", "", "", "低保", "独居老人", "留守儿童", "残疾", "脱贫监测", "五保"}
	mets      = []string{"户主", "户主及配偶", "老人", "全家", "子女"}
	needTexts = []string{"", "", "", "", "", "", "看病报销咨询", "孩子上学补助", "房屋漏雨", "务工信息", "低保复核", "自来水管破裂"}
	helpTexts = []string{"", "", "", "宣讲政策", "代办医保", "帮助联系村委", "送米送油", "协调维修"}
	followUps = []string{"", "", "", "", "下月回访", "联系镇民政办", "跟进维修进度"}
	subjects  = map[string][]string{
		"meeting":         {"支部党员大会", "支委会", "党小组会", "党课"},
		"party_day":       {"主题党日：环境整治", "主题党日：走访慰问", "主题党日：政策宣讲"},
		"service_request": {"代办医保缴费", "代办养老认证", "预约办理宅基地审批", "帮办残疾证"},
		"other":           {"防汛值守", "森林防火巡查"},
	}
	disputeTitles = map[string][]string{
		"problem": {"排水沟堵塞", "路灯不亮"}, "quarrel": {"邻里口角", "家庭争吵"},
		"dispute": {"宅基地界址纠纷", "山林权属纠纷", "赡养纠纷"}, "hazard": {"危房隐患", "用电隐患"}, "case": {"鸡鸭被盗", "田埂损毁"},
	}
	projectTitles = []string{"修建村组道路", "安装路灯", "整修塘堰", "建设文化广场", "改造饮水管网", "帮扶种植油茶"}
)

const dayMs = int64(24 * time.Hour / time.Millisecond)

type gen struct {
	r   *rand.Rand
	seq int64 // the change number rows carry: one more per row written
}

func (g *gen) next() int64 { g.seq++; return g.seq }

func (g *gen) name() string {
	return string(surnames[g.r.IntN(len(surnames))]) + given[g.r.IntN(len(given))]
}

func pick[T any](g *gen, xs []T) T { return xs[g.r.IntN(len(xs))] }

// uuid7 is a UUIDv7-shaped id for a row created at ms (as the phones make).
func (g *gen) uuid7(ms int64) string {
	a, b := g.r.Uint64(), g.r.Uint64()
	return fmt.Sprintf("%08x-%04x-7%03x-%04x-%012x", uint64(ms)>>16, uint64(ms)&0xffff, a&0xfff, 0x8000|(a>>12)&0x3fff, b&0xffffffffffff)
}

type unit struct {
	id, parent, name, village, town string
}

type household struct {
	id, grid, village, town string
	voided                  bool
	// link history: members and the times they were linked from.
	members []string
	from    []int64
}

// memberAt is the member h was linked to at t ("" if none).
func (h *household) memberAt(t int64) string {
	m := ""
	for i, f := range h.from {
		if f <= t {
			m = h.members[i]
		}
	}
	return m
}

// Fill writes the city of spec into db, which must hold hq/schema.sql's
// tables, empty. Everything goes in one transaction of multi-row INSERTs.
func Fill(ctx context.Context, db *sql.DB, spec Spec) (*City, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	start := time.Now()
	g := &gen{r: rand.New(rand.NewPCG(spec.Seed, 0x5eed))}
	c := &City{Spec: spec, Rows: map[string]int{}}

	lastStart, _ := time.ParseInLocation("2006-01", spec.Last, china)
	for i := spec.Months - 1; i >= 0; i-- {
		c.MonthsList = append(c.MonthsList, lastStart.AddDate(0, -i, 0).Format("2006-01"))
	}
	first, _ := time.ParseInLocation("2006-01", c.MonthsList[0], china)
	yearStart := first.UnixMilli()
	endOfLast := lastStart.AddDate(0, 1, 0).UnixMilli() - 1

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	w := &writer{ctx: ctx, tx: tx, rows: c.Rows, stmts: map[string]*sql.Stmt{}}

	// The org.
	towns := make([]unit, spec.Towns)
	for t := range towns {
		name := fmt.Sprintf("第%d镇", t+1)
		if t < len(townNames) {
			name = townNames[t]
		}
		towns[t] = unit{id: fmt.Sprintf("T%02d", t+1), name: name}
		towns[t].town = towns[t].id
		w.add("units", "id, kind, parent_id, name, village_id, town_id, seq", towns[t].id, "town", "", name, "", towns[t].id, g.next())
	}
	villages := make([]unit, spec.Villages)
	for v := range villages {
		t := towns[v*spec.Towns/spec.Villages]
		villages[v] = unit{id: fmt.Sprintf("V%04d", v+1), parent: t.id, town: t.id,
			name: string(surnames[g.r.IntN(len(surnames))]) + pick(g, []string{"店村", "畈村", "岗村", "河村", "山村", "湾村"})}
		villages[v].village = villages[v].id
		w.add("units", "id, kind, parent_id, name, village_id, town_id, seq", villages[v].id, "village", t.id, villages[v].name, villages[v].id, t.id, g.next())
	}
	grids := make([]unit, spec.Grids)
	for i := range grids {
		v := villages[i*spec.Villages/spec.Grids]
		grids[i] = unit{id: fmt.Sprintf("G%05d", i+1), parent: v.id, village: v.id, town: v.town,
			name: string(surnames[g.r.IntN(len(surnames))]) + pick(g, places)}
		w.add("units", "id, kind, parent_id, name, village_id, town_id, seq", grids[i].id, "grid", v.id, grids[i].name, v.id, v.town, g.next())
	}

	// People: members in grids, two mediators and a secretary per village,
	// a secretary per town, three HQ staff. One device each.
	const peopleCols = "id, name, role, unit_id, village_id, town_id, disabled_ms, seq"
	gridMembers := make([][]string, spec.Grids)
	person := func(id, role string, u unit) {
		w.add("people", peopleCols, id, g.name(), role, u.id, u.village, u.town, 0, g.next())
		enrolled := yearStart - int64(g.r.IntN(200))*dayMs
		seen := spec.NowMs - int64(g.r.ExpFloat64()*2*float64(dayMs))
		if g.r.IntN(100) < 3 { // some phones have not synced for weeks
			seen = spec.NowMs - int64(10+g.r.IntN(50))*dayMs
		}
		pending := 0
		if g.r.IntN(10) == 0 {
			pending = 1 + g.r.IntN(30)
		}
		w.add("devices", "id, user_id, name, app_version, enrolled_ms, last_seen_ms, pending, revoked_ms, restored_ms, restores, last_seq, seq",
			"D-"+id, id, "手机", pick(g, []string{"1.4.0", "1.4.0", "1.4.0", "1.3.2", "1.3.2", "1.2.0"}), enrolled, seen, pending, 0, 0, 0, 0, g.next())
	}
	for m := range spec.Members {
		gi := m * spec.Grids / spec.Members
		id := fmt.Sprintf("U%06d", m+1)
		person(id, "member", grids[gi])
		gridMembers[gi] = append(gridMembers[gi], id)
	}
	for v, vu := range villages {
		person(fmt.Sprintf("M%04d-1", v+1), "mediator", vu)
		person(fmt.Sprintf("M%04d-2", v+1), "mediator", vu)
		person(fmt.Sprintf("S%04d", v+1), "secretary", vu)
	}
	for _, t := range towns {
		person("S-"+t.id, "secretary", t)
	}
	for i := range 3 {
		person(fmt.Sprintf("HQ%d", i+1), "hq", unit{})
	}

	// Households, shared round the grid's members, and their link history:
	// linked a while before the year; some reassigned during it (to
	// another member of the grid), a few unlinked.
	hhs := make([]*household, spec.Households)
	turn := make([]int, spec.Grids)
	const hhCols = "id, grid_id, village_id, town_id, head, address, members, tags, member_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	const lhCols = "household_id, seq, member_id, previous_member_id, from_ms, by"
	span := spec.NowMs - yearStart
	for i := range hhs {
		gi := i * spec.Grids / spec.Households
		gr := grids[gi]
		h := &household{id: fmt.Sprintf("H%06d", i+1), grid: gr.id, village: gr.village, town: gr.town}
		hhs[i] = h
		ms := gridMembers[gi]
		m := ms[turn[gi]%len(ms)]
		turn[gi]++
		h.members, h.from = []string{m}, []int64{yearStart - int64(30+g.r.IntN(300))*dayMs}
		switch x := g.r.IntN(1000); {
		case x < 60 && len(ms) > 1: // reassigned
			other := ms[(turn[gi]+g.r.IntN(len(ms)-1))%len(ms)]
			if other == m {
				other = ms[(slicesIndex(ms, m)+1)%len(ms)]
			}
			h.members, h.from = append(h.members, other), append(h.from, yearStart+g.r.Int64N(span))
		case x < 64: // unlinked (the member moved away), not yet relinked
			h.members, h.from = append(h.members, ""), append(h.from, yearStart+g.r.Int64N(span))
		}
		h.voided = g.r.IntN(1000) < 2
		created := h.from[0] - int64(g.r.IntN(30))*dayMs
		voidReason, voidedMs := "", int64(0)
		if h.voided {
			voidReason, voidedMs = "重复登记", yearStart+g.r.Int64N(span)
		}
		cur := h.members[len(h.members)-1]
		w.add("households", hhCols, h.id, gr.id, gr.village, gr.town, g.name(), fmt.Sprintf("%s%d号", gr.name, turn[gi]),
			1+g.r.IntN(6), pick(g, tags), cur, g.next(), "S"+gr.village[1:], "D-S"+gr.village[1:], created, max(created, h.from[len(h.from)-1]),
			b2i(h.voided), voidReason, voidedMs)
		prev, by := "", ""
		var seq int64
		for k, mem := range h.members {
			seq = g.next()
			by = "admin:导入"
			if k > 0 {
				by = "secretary:S" + gr.village[1:]
			}
			w.add("link_history", lhCols, h.id, seq, mem, prev, h.from[k], by)
			prev = mem
		}
		w.add("links", "household_id, member_id, since_ms, by, seq", h.id, cur, h.from[len(h.from)-1], by, seq)
		if cur != "" && !h.voided {
			c.Linked++
		}
		if m := h.memberAt(endOfLast); m != "" && !h.voided {
			c.LinkedEndOfLast++
		}
	}
	c.Town, c.Village, c.Grid = towns[0].id, villages[0].id, grids[0].id
	c.Member = gridMembers[0][0]

	// Visits: each month, each linked household is visited with its
	// village's rate for the month (75-98%), now and then twice; a few
	// visits are voided (entered twice).
	const visitCols = "id, household_id, visited_on, month, met, needs, help, follow_up, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	const needCols = "id, household_id, visit_id, category, summary, detail, status, help, resolution, referral_reason, taken_by, raised_ms, met_ms, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	const shCols = "record_id, n, kind, from_status, to_status, at_ms, author_id"
	villageRate := make([]float64, spec.Villages)
	for v := range villageRate {
		villageRate[v] = 0.75 + 0.23*g.r.Float64()
	}
	villageIndex := map[string]int{}
	for v, vu := range villages {
		villageIndex[vu.id] = v
	}
	visitedLast := map[string]bool{}
	for mi, month := range c.MonthsList {
		ms0, _ := time.ParseInLocation("2006-01", month, china)
		days := ms0.AddDate(0, 1, -1).Day()
		if mi == len(c.MonthsList)-1 {
			days = min(days, time.UnixMilli(spec.NowMs).In(china).Day())
		}
		monthRate := make([]float64, spec.Villages)
		for v := range monthRate {
			monthRate[v] = min(0.99, villageRate[v]+0.06*(g.r.Float64()-0.5))
		}
		for _, h := range hhs {
			n := 0
			if g.r.Float64() < monthRate[villageIndex[h.village]] {
				n = 1
				if g.r.IntN(100) < 4 {
					n = 2
				}
			}
			for range n {
				day := 1 + g.r.IntN(days)
				on := ms0.AddDate(0, 0, day-1)
				at := on.UnixMilli() + int64(8+g.r.IntN(10))*3600_000 + g.r.Int64N(3600_000)
				member := h.memberAt(at)
				if member == "" {
					continue
				}
				created := min(at+g.r.Int64N(2*dayMs), spec.NowMs-1)
				id := g.uuid7(at)
				voided := g.r.IntN(1000) < 3
				voidReason, voidedMs := "", int64(0)
				if voided {
					voidReason, voidedMs = "重复录入", created+3600_000
				}
				needs := pick(g, needTexts)
				w.add("visits", visitCols, id, h.id, on.Format("2006-01-02"), month, pick(g, mets), needs, pick(g, helpTexts), pick(g, followUps),
					h.village, h.town, g.next(), member, "D-"+member, created, max(created, voidedMs), b2i(voided), voidReason, voidedMs)
				c.Visits++
				if month == spec.Last && !voided && !h.voided && h.memberAt(endOfLast) != "" {
					visitedLast[h.id] = true
				}
				if needs != "" && g.r.IntN(20) == 0 { // a need raised on the visit
					nid := g.uuid7(created)
					status, metMs, taken := needStatus(g, created, spec.NowMs)
					w.add("needs", needCols, nid, h.id, id, pick(g, []string{"livelihood", "medical", "housing", "employment", "education", "elderly", "infrastructure", "other"}),
						needs, "", status, "", "", referral(status), taken, created, metMs, h.village, h.town, g.next(), member, "D-"+member, created, max(created, metMs), 0, "", 0)
					w.add("status_history", shCols, nid, 0, "need", "", "raised", created, member)
					if status != "raised" {
						w.add("status_history", shCols, nid, 1, "need", "raised", status, max(created+dayMs, metMs), member)
					}
				}
			}
		}
	}
	c.VisitedLast = len(visitedLast)

	// Disputes: about two a village a month; the older, the likelier
	// settled and closed.
	const dCols = "id, category, title, status, result, level, occurred_on, agreed_on, household_id, visit_id, reported_by, mediators, parties, agreement, outcome, opened_ms, settled_ms, closed_ms, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	for v, vu := range villages {
		for range spec.Months * 2 {
			opened := yearStart + g.r.Int64N(span)
			cat := pick(g, []string{"problem", "quarrel", "quarrel", "dispute", "dispute", "hazard", "case"})
			med := fmt.Sprintf("M%04d-%d", v+1, 1+g.r.IntN(2))
			age := float64(spec.NowMs-opened) / float64(dayMs)
			status, result, level, agreed := "open", "", "", ""
			settled, closed := int64(0), int64(0)
			x := g.r.Float64()
			switch {
			case x < 0.08+age/400:
				status = "mediating"
				if g.r.Float64() < 0.8+age/1000 {
					settled = opened + int64((1+g.r.ExpFloat64()*10)*float64(dayMs))
					if settled < spec.NowMs {
						result = pick(g, []string{"agreed", "agreed", "agreed", "agreed", "failed", "referred", "withdrawn"})
						status, level = result, pick(g, []string{"village", "village", "village", "town", "referred_out"})
						if result == "agreed" {
							agreed = time.UnixMilli(settled).In(china).Format("2006-01-02")
						}
						if g.r.IntN(2) == 0 && settled+7*dayMs < spec.NowMs {
							status, closed = "closed", settled+7*dayMs
						}
					} else {
						settled = 0
					}
				}
			}
			id := g.uuid7(opened)
			w.add("disputes", dCols, id, cat, pick(g, disputeTitles[cat]), status, result, level,
				time.UnixMilli(opened-dayMs).In(china).Format("2006-01-02"), agreed, "", "", med, med, g.name()+"、"+g.name(), "", "",
				opened, settled, closed, vu.id, vu.town, g.next(), med, "D-"+med, opened, max(opened, settled, closed), 0, "", 0)
			n := 0
			w.add("status_history", shCols, id, n, "dispute", "", "open", opened, med)
			if status != "open" {
				n++
				w.add("status_history", shCols, id, n, "dispute", "open", "mediating", opened+dayMs/2, med)
			}
			if result != "" {
				n++
				w.add("status_history", shCols, id, n, "dispute", "mediating", result, settled, med)
			}
			if closed != 0 {
				n++
				w.add("status_history", shCols, id, n, "dispute", result, "closed", closed, med)
			}
		}
	}

	// Projects: DOMAIN.md's 16,258 for the city, in proportion.
	const pCols = "id, title, detail, leader_id, households, planned_on, status, outcome, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	nProjects := max(1, int(16258*float64(spec.Households)/113522+0.5))
	for range nProjects {
		gi := g.r.IntN(spec.Grids)
		gr := grids[gi]
		leader := pick(g, gridMembers[gi])
		created := yearStart + g.r.Int64N(span)
		status := pick(g, []string{"planned", "in_progress", "in_progress", "completed", "completed", "completed", "abandoned"})
		outcome := ""
		if status == "completed" {
			outcome = "已完成"
		}
		id := g.uuid7(created)
		w.add("projects", pCols, id, pick(g, projectTitles), "", leader, "", time.UnixMilli(created+30*dayMs).In(china).Format("2006-01-02"), status, outcome,
			gr.village, gr.town, g.next(), leader, "D-"+leader, created, created, 0, "", 0)
		w.add("status_history", shCols, id, 0, "project", "", "planned", created, leader)
		if status != "planned" {
			w.add("status_history", shCols, id, 1, "project", "planned", status, min(spec.NowMs-1, created+int64(g.r.IntN(60))*dayMs), leader)
		}
	}

	// Events: each village secretary's phone keeps a hash chain of the
	// village's meetings (三会一课), theme party days and service requests.
	const eCols = "id, type, occurred_on, month, subject, detail, service_mode, prev_hash, hash, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms"
	for v, vu := range villages {
		sec := fmt.Sprintf("S%04d", v+1)
		prev := ""
		nGrids := 0
		for gi := v * spec.Grids / spec.Villages; gi < (v+1)*spec.Grids/spec.Villages; gi++ {
			nGrids++
		}
		for _, month := range c.MonthsList {
			ms0, _ := time.ParseInLocation("2006-01", month, china)
			days := ms0.AddDate(0, 1, -1).Day()
			n := 2 + nGrids + g.r.IntN(12) // meetings, a party day, service requests
			for k := range n {
				typ := "service_request"
				switch {
				case k == 0:
					typ = "party_day"
				case k <= nGrids:
					typ = "meeting"
				case g.r.IntN(20) == 0:
					typ = "other"
				}
				on := ms0.AddDate(0, 0, g.r.IntN(days))
				at := on.UnixMilli() + 10*3600_000
				if at >= spec.NowMs {
					continue
				}
				mode := ""
				if typ == "service_request" {
					mode = pick(g, []string{"direct", "direct", "proxy", "appointment"})
				}
				sum := sha256.Sum256([]byte(fmt.Sprint(prev, v, month, k)))
				hash := hex.EncodeToString(sum[:])
				w.add("events", eCols, g.uuid7(at), typ, on.Format("2006-01-02"), month, pick(g, subjects[typ]), "", mode, prev, hash,
					vu.id, vu.town, g.next(), sec, "D-"+sec, at, at, 0, "", 0)
				prev = hash
			}
		}
	}

	if err := w.flush(); err != nil {
		return nil, err
	}
	if w.err != nil {
		return nil, w.err
	}
	// Where the model stands, as if it had followed a stream of g.seq
	// changes (a Follow on a real stream sees another lineage and starts
	// over).
	for k, v := range map[string]string{
		"hqtest":   fmt.Sprintf("generated city: seed %d, %d households, months %s..%s", spec.Seed, spec.Households, c.MonthsList[0], spec.Last),
		"last_seq": fmt.Sprint(g.seq), "lineage": fmt.Sprintf("hqtest-%d", spec.Seed),
	} {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	c.Elapsed = time.Since(start)
	return c, nil
}

func needStatus(g *gen, raised, now int64) (status string, metMs int64, taken string) {
	switch x := g.r.IntN(10); {
	case x < 2:
		return "raised", 0, ""
	case x < 4:
		return "taken", 0, ""
	case x < 5:
		return "referred", 0, ""
	default:
		met := raised + int64((1+g.r.ExpFloat64()*8)*float64(dayMs))
		if met >= now {
			return "taken", 0, ""
		}
		return "resolved", met, ""
	}
}

func referral(status string) string {
	if status == "referred" {
		return "需镇民政办审批"
	}
	return ""
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func slicesIndex(xs []string, v string) int {
	for i, x := range xs {
		if x == v {
			return i
		}
	}
	return -1
}

// writer batches rows per table into multi-row INSERTs through prepared
// statements (modernc's SQLite parses a statement on every Exec
// otherwise).
type writer struct {
	ctx   context.Context
	tx    *sql.Tx
	rows  map[string]int
	stmts map[string]*sql.Stmt
	bufs  map[string]*batch
	err   error // the first failed insert; later rows are dropped
}

type batch struct {
	cols string
	n    int // columns
	per  int // rows per statement
	args []any
}

func (w *writer) add(table, cols string, vals ...any) {
	if w.bufs == nil {
		w.bufs = map[string]*batch{}
	}
	b := w.bufs[table]
	if b == nil {
		n := strings.Count(cols, ",") + 1
		b = &batch{cols: cols, n: n, per: max(1, 900/n)}
		w.bufs[table] = b
	}
	if len(vals) != b.n {
		panic(fmt.Sprintf("hqtest: %s: %d values for %d columns", table, len(vals), b.n))
	}
	b.args = append(b.args, vals...)
	w.rows[table]++
	if len(b.args) == b.n*b.per {
		if w.err == nil {
			w.err = w.exec(table, b, b.per)
		}
		b.args = b.args[:0]
	}
}

func (w *writer) exec(table string, b *batch, rows int) error {
	key := fmt.Sprint(table, "/", rows)
	st := w.stmts[key]
	if st == nil {
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", b.n), ",") + ")"
		q := "INSERT INTO " + table + " (" + b.cols + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
		var err error
		if st, err = w.tx.PrepareContext(w.ctx, q); err != nil {
			return fmt.Errorf("hqtest: prepare %s: %w", table, err)
		}
		w.stmts[key] = st
	}
	if _, err := st.ExecContext(w.ctx, b.args...); err != nil {
		return fmt.Errorf("hqtest: insert into %s: %w", table, err)
	}
	return nil
}

func (w *writer) flush() error {
	for table, b := range w.bufs {
		if len(b.args) > 0 {
			if err := w.exec(table, b, len(b.args)/b.n); err != nil {
				return err
			}
			b.args = b.args[:0]
		}
	}
	for _, st := range w.stmts {
		st.Close()
	}
	return nil
}

// Cached returns a database file holding the city of spec, built once and
// kept in the user's cache directory (FIELDSYNC_HQTEST_CACHE overrides it)
// under a name made from spec, package hq's source (schema, migrations)
// and this generator's:
// a change to any of them builds a new one. Benchmarks read it; they must
// not write to it (copy it first).
func Cached(ctx context.Context, spec Spec) (string, *City, error) {
	dir := os.Getenv("FIELDSYNC_HQTEST_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "fieldsync-hqtest")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%+v\x00", spec)
	_, file, _, _ := runtime.Caller(0)
	srcs, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "..", "*.go"))
	srcs = append(srcs, filepath.Join(filepath.Dir(file), "..", "schema.sql"), file)
	for _, f := range srcs {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", nil, fmt.Errorf("hqtest: read the model's and the generator's source: %w", err)
		}
		h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	path := filepath.Join(dir, "city-"+key+".db")
	meta := path + ".json"
	if b, err := os.ReadFile(meta); err == nil {
		c := &City{}
		if err := json.Unmarshal(b, c); err == nil {
			if _, err := os.Stat(path); err == nil {
				return path, c, nil
			}
		}
	}
	tmp := path + ".building-" + strconv.Itoa(os.Getpid())
	os.Remove(tmp)
	c, err := Build(ctx, tmp, spec)
	if err != nil {
		os.Remove(tmp)
		return "", nil, err
	}
	b, _ := json.Marshal(c)
	if err := os.Rename(tmp, path); err != nil {
		return "", nil, err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	if err := os.WriteFile(meta, b, 0o600); err != nil {
		return "", nil, err
	}
	return path, c, nil
}
