package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// maxListed is how many refused rows a province import lists before it
// says how many more there are.
const maxListed = 20

// regionRefs are the columns that name another row, by table, and why both
// must be in one region.
var regionRefs = map[string]map[string]string{
	"units":       {"parent_id": "a unit and its parent are in one region"},
	"users":       {"unit_id": "a person works in a unit of their own region"},
	"households":  {"grid_id": "a household's grid is in its own region"},
	"assignments": {"member_id": "a household is linked to a member of its own region"},
}

// splitOrg divides a province's rows among the regions of f by the region
// each row's id names (units, users, households: id; assignments:
// household_id). It refuses a row whose region is not in f, or that names
// a unit, grid or member of another region, naming its file and line. The
// parts keep the rows' order and lines.
func splitOrg(org *orgRows, f *regionsFile) (map[string]*orgRows, []rowError) {
	parts := map[string]*orgRows{}
	part := func(r string) *orgRows {
		p := parts[r]
		if p == nil {
			p = &orgRows{lines: map[string][]int{}}
			parts[r] = p
		}
		return p
	}
	var refused []rowError
	// route finds a row's region and checks its references, or records
	// why the row is refused.
	route := func(table string, i int, idColumn, id string, refs map[string]string) (string, bool) {
		line := org.lines[table][i]
		bad := func(column, format string, args ...any) {
			refused = append(refused, rowError{File: table + ".csv", Line: line, Table: table, Column: column, Message: fmt.Sprintf(format, args...)})
		}
		r, err := f.regionOfID(idColumn, id)
		if err != nil {
			bad(idColumn, "%v", err)
			return "", false
		}
		ok := true
		for _, column := range []string{"parent_id", "unit_id", "grid_id", "member_id"} {
			ref, why := refs[column]
			if !why || ref == "" {
				continue
			}
			if other := domain.RegionOfID(ref); other != r.Name {
				in := "no region"
				if other != "" {
					in = "region " + other
				}
				bad(column, "%q lies in %s, the row in region %s (%s %q): %s", ref, in, r.Name, idColumn, id, regionRefs[table][column])
				ok = false
			}
		}
		return r.Name, ok
	}
	// keep puts row i of table in region r's part, with its line.
	keep := func(r, table string, i int) *orgRows {
		p := part(r)
		p.lines[table] = append(p.lines[table], org.lines[table][i])
		return p
	}
	for i, u := range org.units {
		if r, ok := route("units", i, "id", u.GetId(), map[string]string{"parent_id": u.GetParentId()}); ok {
			p := keep(r, "units", i)
			p.units = append(p.units, u)
		}
	}
	for i, u := range org.users {
		if r, ok := route("users", i, "id", u.GetId(), map[string]string{"unit_id": u.GetUnitId()}); ok {
			p := keep(r, "users", i)
			p.users = append(p.users, u)
		}
	}
	for i, h := range org.households {
		if r, ok := route("households", i, "id", h.GetId(), map[string]string{"grid_id": h.GetGridId()}); ok {
			p := keep(r, "households", i)
			p.households = append(p.households, h)
		}
	}
	for i, a := range org.assignments {
		if r, ok := route("assignments", i, "household_id", a.GetHouseholdId(), map[string]string{"member_id": a.GetMemberId()}); ok {
			p := keep(r, "assignments", i)
			p.assignments = append(p.assignments, a)
		}
	}
	sortRowErrors(refused)
	return parts, refused
}

// rowCount is how many rows an org holds.
func (o *orgRows) rowCount() int {
	return len(o.units) + len(o.users) + len(o.households) + len(o.assignments)
}

// importCounts is what an import did, as --json prints it (admin import,
// and each region's part of a province import).
type importCounts struct {
	Units        int32      `json:"units"`
	Users        int32      `json:"users"`
	Households   int32      `json:"households"`
	Assignments  int32      `json:"assignments"`
	RecordsMoved int32      `json:"records_moved"`
	Rejected     int        `json:"rejected"`
	Errors       []rowError `json:"errors"`
}

// regionImport is one region's part of a province import, as --json
// prints it.
type regionImport struct {
	Region string `json:"region"`
	Server string `json:"server"`
	Rows   int    `json:"rows"` // in the files
	importCounts
	// Status: "imported", "rejected rows" (some rows refused by syncd),
	// "failed" (Error says why; run again with -region), "not sent"
	// (interrupted before its turn), "no rows".
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// provinceImport is a province import's --json.
type provinceImport struct {
	Regions      []regionImport `json:"regions"`
	Units        int32          `json:"units"`
	Users        int32          `json:"users"`
	Households   int32          `json:"households"`
	Assignments  int32          `json:"assignments"`
	RecordsMoved int32          `json:"records_moved"`
	Rejected     int            `json:"rejected"`
	Errors       []rowError     `json:"errors"`
	Failed       []string       `json:"failed"` // regions to run again
	Sent         bool           `json:"sent"`   // false: refused before anything was sent
}

// importProvince splits a province's rows by region and sends each
// region's part to its syncd (only -region's, when given).
func (c *cli) importProvince(ctx context.Context, org *orgRows, asJSON bool) error {
	parts, refused := splitOrg(org, c.regions)
	out := provinceImport{Regions: []regionImport{}, Errors: []rowError{}, Failed: []string{}}
	if bad := append(append([]rowError(nil), org.errs...), refused...); len(bad) > 0 {
		sortRowErrors(bad)
		out.Rejected, out.Errors = len(bad), bad
		if asJSON {
			if err := writeJSON(c.stdout, out); err != nil {
				return err
			}
		} else {
			for i, e := range bad {
				if i == maxListed {
					fmt.Fprintf(c.stderr, "... and %d more\n", len(bad)-maxListed)
					break
				}
				fmt.Fprintln(c.stderr, escapeLines(e.String()))
			}
		}
		return fmt.Errorf("%s refused (listed above): nothing was sent to any region; fix the files and run the import again",
			plural(len(bad), "row", "rows"))
	}

	regions := c.regions.regions
	if c.routed != nil {
		regions = []*region{c.routed}
	}
	// Every region with rows must have its credential and CA here before
	// anything is sent: a missing file is fixed once, not per region.
	var missing []error
	for _, r := range regions {
		if parts[r.Name] == nil {
			continue
		}
		rc := c.forRegion(r)
		if err := rc.checkRegionFiles(); err != nil {
			missing = append(missing, err)
		} else if _, err := readToken(rc.tokenFile); err != nil {
			missing = append(missing, rc.regionNote(err))
		} else if _, err := rc.caFingerprint(); err != nil {
			missing = append(missing, rc.regionNote(err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w\nnothing was sent to any region (token_file and ca in %s name each region's files)", errors.Join(missing...), c.regions.path)
	}

	out.Sent = true
	var failed []string
	for _, r := range regions {
		ri := regionImport{Region: r.Name, Server: r.Server, importCounts: importCounts{Errors: []rowError{}}}
		p := parts[r.Name]
		if p == nil {
			ri.Status = "no rows"
			out.Regions = append(out.Regions, ri)
			continue
		}
		ri.Rows = p.rowCount()
		if ctx.Err() != nil { // interrupted: the rest are not sent
			ri.Status, ri.Error = "not sent", "interrupted"
			failed = append(failed, r.Name)
			out.Regions = append(out.Regions, ri)
			continue
		}
		fmt.Fprintf(c.stderr, "fieldctl: %s: importing %s into syncd at %s\n", r.Name, plural(ri.Rows, "row", "rows"), r.Server)
		rc := c.forRegion(r)
		res, errs, err := rc.importRegion(ctx, p)
		for i := range errs {
			errs[i].Region = r.Name
		}
		sortRowErrors(errs)
		ri.Units, ri.Users, ri.Households, ri.Assignments, ri.RecordsMoved = res.GetUnits(), res.GetUsers(), res.GetHouseholds(), res.GetAssignments(), res.GetRecordsMoved()
		ri.Rejected, ri.Errors = len(errs), append(ri.Errors, errs...)
		switch {
		case err != nil:
			ri.Status, ri.Error = "failed", err.Error()
			failed = append(failed, r.Name)
			fmt.Fprintf(c.stderr, "fieldctl: %s: FAILED: %s\n", r.Name, escapeLines(err.Error()))
		case len(errs) > 0:
			ri.Status = "rejected rows"
			fmt.Fprintf(c.stderr, "fieldctl: %s: done, %s rejected\n", r.Name, plural(len(errs), "row", "rows"))
		default:
			ri.Status = "imported"
			fmt.Fprintf(c.stderr, "fieldctl: %s: done\n", r.Name)
		}
		out.Regions = append(out.Regions, ri)
		out.Units += ri.Units
		out.Users += ri.Users
		out.Households += ri.Households
		out.Assignments += ri.Assignments
		out.RecordsMoved += ri.RecordsMoved
		out.Rejected += ri.Rejected
		out.Errors = append(out.Errors, errs...)
	}
	out.Failed = append(out.Failed, failed...)

	if asJSON {
		if err := writeJSON(c.stdout, out); err != nil {
			return err
		}
	} else {
		for _, e := range out.Errors {
			fmt.Fprintln(c.stderr, escapeLines(e.String()))
		}
		t := newTable("REGION", "SERVER", "UNITS", "USERS", "HOUSEHOLDS", "ASSIGNMENTS", "MOVED", "REJECTED", "RESULT")
		for _, ri := range out.Regions {
			t.add(ri.Region, ri.Server, fmt.Sprint(ri.Units), fmt.Sprint(ri.Users), fmt.Sprint(ri.Households),
				fmt.Sprint(ri.Assignments), fmt.Sprint(ri.RecordsMoved), fmt.Sprint(ri.Rejected), ri.Status)
		}
		t.add("total", "", fmt.Sprint(out.Units), fmt.Sprint(out.Users), fmt.Sprint(out.Households),
			fmt.Sprint(out.Assignments), fmt.Sprint(out.RecordsMoved), fmt.Sprint(out.Rejected), "")
		if err := t.write(c.stdout); err != nil {
			return err
		}
	}
	var msgs []string
	if len(failed) > 0 {
		again := make([]string, len(failed))
		for i, r := range failed {
			again[i] = "-region " + r
		}
		which := "region " + failed[0]
		if len(failed) > 1 {
			which = "regions " + strings.Join(failed, ", ")
		}
		msgs = append(msgs, fmt.Sprintf("the import into %s failed (above); the other regions' rows were imported: once its syncd is reachable, run the same command again with %s (importing rows again changes nothing)",
			which, strings.Join(again, ", then with ")))
	}
	if out.Rejected > 0 {
		msgs = append(msgs, fmt.Sprintf("%s rejected by the regions' syncds (listed above); the other rows were imported", plural(out.Rejected, "row", "rows")))
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// forRegion is a copy of the invocation pointed at region r's syncd.
func (c *cli) forRegion(r *region) *cli {
	rc := *c
	rc.useRegion(r)
	return &rc
}

// importRegion sends one region's rows to its syncd.
func (c *cli) importRegion(ctx context.Context, org *orgRows) (*pb.ImportOrgResponse, []rowError, error) {
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	return c.sendOrg(actx, pb.NewAdminServiceClient(conn), org, c.routed.Name+": ")
}
