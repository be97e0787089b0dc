package report

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// defaultStaleDays is how many days without a sync make a phone stale
// when the page is not told ("days").
const defaultStaleDays = 7

type deviceRow struct {
	id, user, userName, unitID, name, version string
	lastSeen, pending, revoked, restored      int64
}

// active: not revoked, or restored since.
func (d deviceRow) active() bool { return d.revoked == 0 || d.restored > d.revoked }

// deviceScope is the condition on people p confining devices to the
// query's scope (by their user's units).
func (e *env) deviceScope() (string, []any) {
	if e.q.Town == "" && e.unit == nil {
		return "1 = 1", nil
	}
	return e.scope("p", "unit_id")
}

func (e *env) devices() ([]deviceRow, error) {
	sc, args := e.deviceScope()
	rows, err := e.db.QueryContext(e.ctx, `SELECT d.id, d.user_id, coalesce(p.name, ''), coalesce(p.unit_id, ''), d.name, d.app_version,
		d.last_seen_ms, d.pending, d.revoked_ms, d.restored_ms
		FROM devices d LEFT JOIN people p ON p.id = d.user_id WHERE `+sc+` ORDER BY d.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: devices: %w", err)
	}
	defer rows.Close()
	var out []deviceRow
	for rows.Next() {
		var d deviceRow
		if err := rows.Scan(&d.id, &d.user, &d.userName, &d.unitID, &d.name, &d.version, &d.lastSeen, &d.pending, &d.revoked, &d.restored); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (e *env) staleDays() (int64, error) {
	v, ok := e.filter["days"]
	if !ok {
		return defaultStaleDays, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > 3650 {
		return 0, badFilter("days", v, "a whole number of days from 1 to 3650")
	}
	return n, nil
}

func (e *env) deviceTable(name, title string, ds []deviceRow) Table {
	t := Table{Name: name, Title: title, Columns: []Column{e.col("device", false), e.col("device_name", false), e.col("user", false),
		e.col("unit", false), e.col("app_version", false), e.col("last_seen", false), e.col("days_since", true), e.col("pending", true)}}
	for _, d := range ds {
		since := Cell{Text: "—"}
		if d.lastSeen > 0 {
			since = num((e.now-d.lastSeen)/dayMs, "")
		}
		t.Rows = append(t.Rows, []Cell{txt(d.id), txt(d.name), txt(nameOr(d.userName, d.user)), txt(e.unitName(d.unitID)), txt(d.version),
			txt(dayOf(d.lastSeen)), since, num(d.pending, "")})
	}
	return t
}

func devicesPage(e *env) (*Result, error) {
	n, err := e.staleDays()
	if err != nil {
		return nil, err
	}
	ds, err := e.devices()
	if err != nil {
		return nil, err
	}
	u, nd := e.unitParam(), strconv.FormatInt(n, 10)
	var active, stale, pending int64
	var staleRows []deviceRow
	versions := map[string]int64{}
	for _, d := range ds {
		if !d.active() {
			continue
		}
		active++
		versions[d.version]++
		if d.pending > 0 {
			pending++
		}
		if d.lastSeen < e.now-n*dayMs {
			stale++
			staleRows = append(staleRows, d)
		}
	}
	sum := Table{Name: "devices-summary", Title: label(e.lang, "table.devices-summary"),
		Columns: []Column{e.col("active", true), e.col("stale", true), e.col("with_pending", true)},
		Rows: [][]Cell{{num(active, link("device-list", "unit", u)), num(stale, link("device-list", "days", nd, "unit", u)),
			num(pending, link("device-list", "pending", "1", "unit", u))}}}
	sort.Slice(staleRows, func(i, j int) bool { return staleRows[i].lastSeen < staleRows[j].lastSeen })
	st := e.deviceTable("devices-not-synced", fmt.Sprintf(label(e.lang, "table.devices-stale"), n), staleRows)
	vt := Table{Name: "app-versions", Title: label(e.lang, "table.app-versions"), Columns: []Column{e.col("app_version", false), e.col("devices", true)}}
	vs := make([]string, 0, len(versions))
	for v := range versions {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		name := v
		if v == "" {
			name = label(e.lang, "val.none")
		}
		vt.Rows = append(vt.Rows, []Cell{txt(name), num(versions[v], link("device-list", "app_version", v, "unit", u))})
	}
	return &Result{Title: e.title("devices", false), Tables: []Table{sum, st, vt}}, nil
}

func deviceListPage(e *env) (*Result, error) {
	ds, err := e.devices()
	if err != nil {
		return nil, err
	}
	f := e.filter
	var n int64
	if _, ok := f["days"]; ok {
		if n, err = e.staleDays(); err != nil {
			return nil, err
		}
	}
	if v, ok := f["pending"]; ok && v != "1" {
		return nil, badFilter("pending", v, "1 (devices with pending work)")
	}
	var out []deviceRow
	for _, d := range ds {
		if !d.active() {
			continue
		}
		if n > 0 && d.lastSeen >= e.now-n*dayMs {
			continue
		}
		if has(f, "pending") && d.pending == 0 {
			continue
		}
		if v, ok := f["app_version"]; ok && d.version != v {
			continue
		}
		out = append(out, d)
	}
	return &Result{Title: e.title("device-list", false), Tables: []Table{e.deviceTable("devices", label(e.lang, "page.device-list"), out)}}, nil
}

// chainRow is one device's chain verified.
type chainRow struct {
	device, user, userName string
	events, refused        int64
	fault                  string
}

// eventFields are the fields an event's hash covers, as the model keeps
// them. The model keeps an absent field and an empty one alike, so the
// optional fields a phone may have sent empty are tried both ways.
var eventFields = []string{"type", "village_id", "occurred_on", "subject", "detail", "service_mode", "prev_hash", "hash"}

var maybeEmpty = []string{"detail", "service_mode"}

// eventRecord rebuilds an event as the record its hash was made over.
func eventRecord(id string, vals map[string]string) *pb.Record {
	fields := map[string]string{}
	for _, k := range eventFields {
		if v := vals[k]; v != "" {
			fields[k] = v
		}
	}
	if domain.EventHash(fields) != fields["hash"] {
		// an optional field sent empty: try the combinations
		for mask := 1; mask < 1<<len(maybeEmpty); mask++ {
			try := map[string]string{}
			for k, v := range fields {
				try[k] = v
			}
			for i, k := range maybeEmpty {
				if mask&(1<<i) != 0 && vals[k] == "" {
					try[k] = ""
				}
			}
			if domain.EventHash(try) == fields["hash"] {
				fields = try
				break
			}
		}
	}
	r := &pb.Record{Id: id, Kind: pb.Kind_KIND_EVENT, Fields: map[string]*pb.FieldValue{}}
	for k, v := range fields {
		r.Fields[k] = &pb.FieldValue{Value: v}
	}
	return r
}

func (e *env) chains() ([]chainRow, error) {
	devs := map[string]*chainRow{}
	// The devices in scope (by their user), or every device the model knows.
	var devCond string
	var args []any
	if e.q.Town != "" || e.unit != nil {
		sc, a := e.scope("p", "unit_id")
		devCond, args = ` IN (SELECT d.id FROM devices d JOIN people p ON p.id = d.user_id WHERE `+sc+`)`, a
	}
	get := func(id string) *chainRow {
		c := devs[id]
		if c == nil {
			c = &chainRow{device: id}
			devs[id] = c
		}
		return c
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT d.id, d.user_id, coalesce(p.name, '') FROM devices d LEFT JOIN people p ON p.id = d.user_id`+
		map[bool]string{true: ` WHERE d.id` + devCond, false: ``}[devCond != ""], args...)
	if err != nil {
		return nil, fmt.Errorf("report: chains: %w", err)
	}
	for rows.Next() {
		var id, user, name string
		if err := rows.Scan(&id, &user, &name); err != nil {
			rows.Close()
			return nil, err
		}
		c := get(id)
		c.user, c.userName = user, name
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	where := ""
	if devCond != "" {
		where = ` WHERE device_id` + devCond
	}
	records := map[string][]*pb.Record{}
	rows, err = e.db.QueryContext(e.ctx, `SELECT device_id, id, type, village_id, occurred_on, subject, detail, service_mode, prev_hash, hash FROM events`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("report: chains: %w", err)
	}
	for rows.Next() {
		var dev, id string
		v := make([]string, len(eventFields))
		if err := rows.Scan(&dev, &id, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]); err != nil {
			rows.Close()
			return nil, err
		}
		vals := map[string]string{}
		for i, k := range eventFields {
			vals[k] = v[i]
		}
		records[dev] = append(records[dev], eventRecord(id, vals))
		get(dev).events++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	refused := map[string][]domain.ChainLink{}
	rows, err = e.db.QueryContext(e.ctx, `SELECT device_id, prev_hash, hash FROM refused_events`+where+` ORDER BY device_id, device_seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: chains: %w", err)
	}
	for rows.Next() {
		var dev string
		var l domain.ChainLink
		if err := rows.Scan(&dev, &l.Prev, &l.Hash); err != nil {
			rows.Close()
			return nil, err
		}
		refused[dev] = append(refused[dev], l)
		get(dev).refused++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]chainRow, 0, len(devs))
	for id, c := range devs {
		if err := domain.VerifyChain(records[id], refused[id]...); err != nil {
			c.fault = err.Error()
		}
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].fault != "") != (out[j].fault != "") {
			return out[i].fault != ""
		}
		return out[i].device < out[j].device
	})
	return out, nil
}

func chainsPage(e *env) (*Result, error) {
	want, ok := e.filter["status"]
	if ok && want != "ok" && want != "broken" {
		return nil, badFilter("status", want, "ok or broken")
	}
	cs, err := e.chains()
	if err != nil {
		return nil, err
	}
	t := Table{Name: "chains", Title: label(e.lang, "table.chains"), Columns: []Column{e.col("device", false), e.col("user", false),
		e.col("events", true), e.col("refused", true), e.col("chain", false), e.col("fault", false)}}
	for _, c := range cs {
		st := "ok"
		if c.fault != "" {
			st = "broken"
		}
		if ok && st != want {
			continue
		}
		t.Rows = append(t.Rows, []Cell{txt(c.device), txt(nameOr(c.userName, c.user)),
			num(c.events, link("event-list", "all", "1", "device", c.device)), num(c.refused, ""),
			txtLink(label(e.lang, "val."+st), link("chains", "status", st, "unit", e.unitParam())), txt(c.fault)})
	}
	return &Result{Title: e.title("chains", false), Tables: []Table{t}}, nil
}

func visitsPage(e *env) (*Result, error) {
	conds := []string{"v.voided = 0", "v.month = ?"}
	args := []any{e.month}
	sc, sargs := e.scope("h", "grid_id")
	conds, args = append(conds, sc), append(args, sargs...)
	if h, ok := e.filter["household"]; ok {
		var town string
		err := e.db.QueryRowContext(e.ctx, `SELECT town_id FROM households WHERE id = ?`, h).Scan(&town)
		if err := e.checkTown("household", h, town, err == nil); err != nil {
			return nil, err
		}
		conds, args = append(conds, "v.household_id = ?"), append(args, h)
	}
	if m, ok := e.filter["member"]; ok {
		conds, args = append(conds, "v.author_id = ?"), append(args, m)
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT v.id, v.visited_on, v.household_id, h.head, h.grid_id, v.author_id, coalesce(p.name, ''), v.met, v.help, v.follow_up
		FROM visits v JOIN households h ON h.id = v.household_id LEFT JOIN people p ON p.id = v.author_id
		WHERE `+joinAnd(conds)+` ORDER BY v.visited_on, v.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: visits: %w", err)
	}
	defer rows.Close()
	files, err := e.fileCounts()
	if err != nil {
		return nil, err
	}
	t := Table{Name: "visits", Title: label(e.lang, "page.visits") + " · " + e.month,
		Columns: []Column{e.col("visit", false), e.col("visited_on", false), e.col("household", false), e.col("head", false), e.col("grid", false),
			e.col("author", false), e.col("met", false), e.col("help", false), e.col("follow_up", false), e.col("files", true)}}
	for rows.Next() {
		var id, on, hid, head, grid, aid, aname, met, help, fu string
		if err := rows.Scan(&id, &on, &hid, &head, &grid, &aid, &aname, &met, &help, &fu); err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, []Cell{txt(id), txt(on), txt(hid), txt(head), txt(e.unitName(grid)), txt(nameOr(aname, aid)), txt(met), txt(help), txt(fu), filesCell(files, id)})
	}
	return &Result{Title: e.title("visits", true), Tables: []Table{t}}, rows.Err()
}

func joinAnd(c []string) string {
	s := c[0]
	for _, x := range c[1:] {
		s += " AND " + x
	}
	return s
}
