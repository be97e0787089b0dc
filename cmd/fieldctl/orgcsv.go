package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// orgFile describes one CSV file of an org import.
type orgFile struct {
	name     string   // "units.csv"
	table    string   // "units", as in RowError.table
	columns  []string // every column it may have, in the documented order
	required []string // columns the header must have
}

// The org files, in the order they are imported: parents before children.
var orgFiles = []orgFile{
	{name: "units.csv", table: "units", columns: []string{"id", "kind", "parent_id", "name"},
		required: []string{"id", "kind", "parent_id", "name"}},
	{name: "users.csv", table: "users", columns: []string{"id", "name", "role", "unit_id", "phone"},
		required: []string{"id", "name", "role", "unit_id"}},
	{name: "households.csv", table: "households", columns: []string{"id", "grid_id", "head", "address", "phone", "members", "tags", "retired"},
		required: []string{"id", "grid_id", "head"}},
	{name: "assignments.csv", table: "assignments", columns: []string{"household_id", "member_id"},
		required: []string{"household_id", "member_id"}},
}

// idColumns hold ids, enums and numbers: surrounding blanks are trimmed.
// Text columns (names, addresses, tags) are kept byte for byte.
var idColumns = map[string]bool{"id": true, "kind": true, "parent_id": true, "role": true, "unit_id": true,
	"grid_id": true, "members": true, "household_id": true, "member_id": true}

// rowError is one rejected row, named by file and line.
type rowError struct {
	Region  string `json:"region,omitempty"` // the region whose syncd rejected it (-regions)
	File    string `json:"file"`
	Line    int    `json:"line"`
	Table   string `json:"table"`
	Column  string `json:"column,omitempty"`
	Message string `json:"message"`
}

func (e rowError) String() string {
	region := ""
	if e.Region != "" {
		region = e.Region + ": "
	}
	if e.Column == "" {
		return fmt.Sprintf("%s%s:%d: %s", region, e.File, e.Line, e.Message)
	}
	return fmt.Sprintf("%s%s:%d: %s: %s", region, e.File, e.Line, e.Column, e.Message)
}

// orgRows is what the CSV files hold: rows ready to send, the line each
// came from, and the rows that could not be read.
type orgRows struct {
	units       []*pb.Unit
	users       []*pb.User
	households  []*pb.Household
	assignments []*pb.Assignment
	lines       map[string][]int // table -> line of each row sent, in order
	errs        []rowError
	files       int // how many of the files were there
}

// csvRow is one data row by column name.
type csvRow struct {
	line int
	v    map[string]string
}

// progressEvery is how often (in rows or records) long jobs report on
// stderr. A variable so that tests can see it with little data.
var progressEvery = 10000

// readOrg reads the org files in dir. A file that is not there is skipped;
// a file whose header is wrong stops the import before anything is sent.
func readOrg(dir string, progress io.Writer) (*orgRows, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("org directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("org directory %s is not a directory", dir)
	}
	org := &orgRows{lines: map[string][]int{}}
	for _, f := range orgFiles {
		rows, errs, err := readCSV(filepath.Join(dir, f.name), f, progress)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		org.files++
		org.errs = append(org.errs, errs...)
		for _, r := range rows {
			if e := org.add(f, r); e != nil {
				org.errs = append(org.errs, *e)
			}
		}
	}
	if org.files == 0 {
		names := make([]string, len(orgFiles))
		for i, f := range orgFiles {
			names[i] = f.name
		}
		return nil, fmt.Errorf("no org files in %s: want one or more of %s", dir, strings.Join(names, ", "))
	}
	// Towns, then villages, then grids, so that a batch never holds a unit
	// whose parent comes in a later one.
	idx := make([]int, len(org.units))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return org.units[idx[a]].GetKind() < org.units[idx[b]].GetKind() })
	units, lines := make([]*pb.Unit, len(idx)), make([]int, len(idx))
	for i, j := range idx {
		units[i], lines[i] = org.units[j], org.lines["units"][j]
	}
	org.units, org.lines["units"] = units, lines
	return org, nil
}

// add converts one CSV row to its message, or says why it cannot.
func (o *orgRows) add(f orgFile, r csvRow) *rowError {
	v := r.v
	bad := func(column, format string, args ...any) *rowError {
		return &rowError{File: f.name, Line: r.line, Table: f.table, Column: column, Message: fmt.Sprintf(format, args...)}
	}
	switch f.table {
	case "units":
		kinds := map[string]pb.UnitKind{"town": pb.UnitKind_UNIT_KIND_TOWN, "village": pb.UnitKind_UNIT_KIND_VILLAGE, "grid": pb.UnitKind_UNIT_KIND_GRID}
		k, ok := kinds[strings.ToLower(v["kind"])]
		if !ok {
			return bad("kind", "%q is not a unit kind: want town, village or grid", v["kind"])
		}
		o.units = append(o.units, &pb.Unit{Id: v["id"], Kind: k, ParentId: v["parent_id"], Name: v["name"]})
	case "users":
		role, ok := domain.ParseRole(strings.ToLower(v["role"]))
		if !ok {
			return bad("role", "%q is not a role: want member, mediator, secretary or hq", v["role"])
		}
		o.users = append(o.users, &pb.User{Id: v["id"], Name: v["name"], Role: role, UnitId: v["unit_id"], Phone: v["phone"]})
	case "households":
		o.households = append(o.households, &pb.Household{Id: v["id"], GridId: v["grid_id"], Head: v["head"],
			Address: v["address"], Phone: v["phone"], Members: v["members"], Tags: v["tags"], Retired: v["retired"]})
	case "assignments":
		o.assignments = append(o.assignments, &pb.Assignment{HouseholdId: v["household_id"], MemberId: v["member_id"]})
	}
	o.lines[f.table] = append(o.lines[f.table], r.line)
	return nil
}

// readCSV reads one org file: its header is checked against f, and each
// row that cannot be read (bad quoting, wrong column count, not UTF-8) is
// reported and skipped.
func readCSV(path string, f orgFile, progress io.Writer) ([]csvRow, []rowError, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	br := bufio.NewReaderSize(file, 1<<16)
	// Excel's "CSV UTF-8" (and our own export) starts with a byte order
	// mark: skipped here, before the CSV reader, so that a quoted first
	// header ("\ufeff\"id\"") reads too.
	if b, _ := br.Peek(len(utf8BOM)); string(b) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1 // counted below, so that the error names the line
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%s: empty file: want a header row %s", f.name, strings.Join(f.columns, ","))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: header: %w", f.name, err)
	}
	cols, err := checkHeader(f, header)
	if err != nil {
		return nil, nil, err
	}
	var (
		rows []csvRow
		errs []rowError
	)
	for n := 1; ; n++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			errs = append(errs, rowError{File: f.name, Line: pe.StartLine, Table: f.table,
				Message: fmt.Sprintf("malformed CSV (line %d, byte %d): %v", pe.Line, pe.Column, pe.Err)})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.name, err)
		}
		line, _ := r.FieldPos(0)
		if n%progressEvery == 0 {
			fmt.Fprintf(progress, "fieldctl: %s: %d rows read\n", f.name, n)
		}
		if len(rec) != len(cols) {
			errs = append(errs, rowError{File: f.name, Line: line, Table: f.table,
				Message: fmt.Sprintf("%d columns, but the header has %d (%s)", len(rec), len(cols), strings.Join(cols, ","))})
			continue
		}
		row := csvRow{line: line, v: make(map[string]string, len(cols))}
		ok := true
		for i, name := range cols {
			s := rec[i]
			if !utf8.ValidString(s) {
				errs = append(errs, rowError{File: f.name, Line: line, Table: f.table, Column: name,
					Message: "not valid UTF-8: save the file as UTF-8 (in Excel: \"CSV UTF-8\"); GBK is not read"})
				ok = false
				break
			}
			if idColumns[name] {
				s = strings.TrimSpace(s)
			}
			row.v[name] = s
		}
		if ok {
			rows = append(rows, row)
		}
	}
	return rows, errs, nil
}

// checkHeader returns the header's column names, or an error naming the
// file and the column that is unknown, repeated or missing.
func checkHeader(f orgFile, header []string) ([]string, error) {
	want := strings.Join(f.columns, ",")
	known := map[string]bool{}
	for _, c := range f.columns {
		known[c] = true
	}
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case !known[h]:
			return nil, fmt.Errorf("%s: header: unknown column %q: want %s", f.name, h, want)
		case seen[h]:
			return nil, fmt.Errorf("%s: header: column %q appears twice", f.name, h)
		}
		seen[h], cols[i] = true, h
	}
	for _, c := range f.required {
		if !seen[c] {
			return nil, fmt.Errorf("%s: header: missing column %q: want %s", f.name, c, want)
		}
	}
	return cols, nil
}

// tableOrder ranks the org tables for sorting errors.
func tableOrder(table string) int {
	for i, f := range orgFiles {
		if f.table == table {
			return i
		}
	}
	return len(orgFiles)
}

func sortRowErrors(errs []rowError) {
	sort.SliceStable(errs, func(a, b int) bool {
		if ta, tb := tableOrder(errs[a].Table), tableOrder(errs[b].Table); ta != tb {
			return ta < tb
		}
		return errs[a].Line < errs[b].Line
	})
}
