package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/domain"
)

// A province's regions file (issue 16) tells fieldctl admin where each
// region's syncd is: one row a region,
//
//	region,server,ca,token_file,advertise
//	xiaonan,10.0.1.5:7443,secrets/xiaonan/ca.pem,secrets/xiaonan/admin.token,xiaonan.example.cn:7443
//
// ca and token_file are relative to the file's own directory; ca may be
// empty (tls/ca.pem beside token_file, as without -regions); advertise is
// optional (the address phones reach the region at, put in its enrollment
// codes; default server). Lines starting with # are comments.

// regionColumns are the regions file's columns, in the documented order.
var regionColumns = []string{"region", "server", "ca", "token_file", "advertise"}

// regionRequired are the columns its header must have.
var regionRequired = []string{"region", "server", "ca", "token_file"}

// region is one row of the regions file: one region's syncd.
type region struct {
	Name      string // a domain.CheckRegion name
	Server    string // syncd's gRPC address, host:port
	CA        string // syncd's CA file, resolved; "" = tls/ca.pem beside TokenFile
	TokenFile string // the admin credential's file, resolved
	Advertise string // the address phones reach it at; "" = Server
	Line      int    // the line of the regions file it is on
}

// phoneAddr is the address its enrollment codes carry.
func (r *region) phoneAddr() string {
	if r.Advertise != "" {
		return r.Advertise
	}
	return r.Server
}

// regionsFile is a parsed regions file.
type regionsFile struct {
	path    string    // as given, for messages
	regions []*region // in the file's order
	byName  map[string]*region
}

// names lists the regions, in the file's order.
func (f *regionsFile) names() []string {
	out := make([]string, len(f.regions))
	for i, r := range f.regions {
		out[i] = r.Name
	}
	return out
}

// where names a region's row, for messages: "regions.csv:3".
func (f *regionsFile) where(r *region) string {
	return fmt.Sprintf("%s:%d", f.path, r.Line)
}

// readRegionsFile reads and checks a regions file.
func readRegionsFile(path string) (*regionsFile, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("regions file (-regions): %w", err)
	}
	defer file.Close()
	return parseRegions(path, file)
}

// parseRegions reads a regions file from r; path names it in messages and
// its directory is where relative paths start. Every cell is checked: the
// error lists each bad one as file:line: column: what is wrong and what is
// allowed.
func parseRegions(path string, in io.Reader) (*regionsFile, error) {
	br := bufio.NewReader(in)
	if b, _ := br.Peek(len(utf8BOM)); string(b) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	want := strings.Join(regionColumns, ",")
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file: want a header row %s and one row per region", path, want)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	cols, err := checkHeader(orgFile{name: path, columns: regionColumns, required: regionRequired}, header)
	if err != nil {
		return nil, err
	}
	f := &regionsFile{path: path, byName: map[string]*region{}}
	base := filepath.Dir(path)
	var errs []string
	bad := func(line int, column, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if column == "" {
			errs = append(errs, fmt.Sprintf("%s:%d: %s", path, line, msg))
		} else {
			errs = append(errs, fmt.Sprintf("%s:%d: %s: %s", path, line, column, msg))
		}
	}
	servers := map[string]*region{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			bad(pe.StartLine, "", "malformed CSV: %v", pe.Err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(cols) {
			bad(line, "", "%d columns, but the header has %d (%s)", len(rec), len(cols), strings.Join(cols, ","))
			continue
		}
		v := map[string]string{}
		ok := true
		for i, c := range cols {
			if !utf8.ValidString(rec[i]) {
				bad(line, c, "not valid UTF-8: save the file as UTF-8")
				ok = false
				continue
			}
			v[c] = strings.TrimSpace(rec[i])
		}
		if !ok {
			continue
		}
		r := &region{Name: v["region"], Line: line}
		switch {
		case r.Name == "":
			bad(line, "region", "empty: want the region's name (a-z and 0-9, starting with a letter, at most 32), e.g. xiaonan")
			ok = false
		case domain.CheckRegion(r.Name) != nil:
			bad(line, "region", "%v", domain.CheckRegion(r.Name))
			ok = false
		case f.byName[r.Name] != nil:
			bad(line, "region", "%q is already on line %d: one row per region", r.Name, f.byName[r.Name].Line)
			ok = false
		}
		if err := checkHostPort(v["server"], true); err != nil {
			bad(line, "server", "%v (syncd's gRPC address, as fieldctl -server takes it)", err)
			ok = false
		} else if other := servers[v["server"]]; other != nil {
			bad(line, "server", "%s is already region %q's (line %d): each region has its own syncd", v["server"], other.Name, other.Line)
			ok = false
		} else {
			r.Server = v["server"]
		}
		if err := checkHostPort(v["advertise"], false); err != nil {
			bad(line, "advertise", "%v (the address phones reach the region's syncd at; leave it empty to use server)", err)
			ok = false
		} else {
			r.Advertise = v["advertise"]
		}
		if v["token_file"] == "" {
			bad(line, "token_file", "empty: want the file holding the region's admin credential (syncd's <data>/admin.token), relative to the regions file's directory")
			ok = false
		} else {
			r.TokenFile = resolvePath(base, v["token_file"])
		}
		if v["ca"] != "" {
			r.CA = resolvePath(base, v["ca"])
		}
		if !ok {
			continue
		}
		f.regions = append(f.regions, r)
		f.byName[r.Name] = r
		servers[r.Server] = r
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	if len(f.regions) == 0 {
		return nil, fmt.Errorf("%s: no regions: want one row per region after the header %s", path, want)
	}
	return f, nil
}

// resolvePath makes p relative to the regions file's directory.
func resolvePath(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// checkHostPort says what is wrong with an address host:port; "" is
// wrong only when required.
func checkHostPort(s string, required bool) error {
	if s == "" {
		if required {
			return errors.New("empty: want host:port, e.g. 10.0.1.5:7443")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: want host:port, e.g. 10.0.1.5:7443 or xiaonan.example.cn:7443", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q: want a number from 1 to 65535", s, port)
	}
	return nil
}

// regionOfID finds the region of an administrator-given id: the region
// domain.RegionOfID names, which must be in the file. what names the id in
// the error ("-user", "id").
func (f *regionsFile) regionOfID(what, id string) (*region, error) {
	name := domain.RegionOfID(id)
	if name == "" {
		return nil, fmt.Errorf("%s %q names no region: with -regions every id starts with its region and \"-\" (%s)", what, id, f.prefixes())
	}
	r := f.byName[name]
	if r == nil {
		return nil, fmt.Errorf("%s %q is region %q's, which %s does not list: want %s (add the region to the file, or fix the id)", what, id, name, f.path, f.prefixes())
	}
	return r, nil
}

// prefixes lists what ids may start with: "xiaonan-..., yunmeng-...".
func (f *regionsFile) prefixes() string {
	var b strings.Builder
	for i, r := range f.regions {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(domain.RegionIDPrefix(r.Name) + "...")
	}
	return b.String()
}

// regionFlags adds the admin group's -regions and -region.
func regionFlags(fs interface {
	StringVar(p *string, name, value, usage string)
}, c *cli) {
	fs.StringVar(&c.regionsFile, "regions", c.regionsFile, "a province's regions `file` (CSV: region,server,ca,token_file,advertise): import, enroll-code, assign, users and codes then go to the region each id names")
	fs.StringVar(&c.region, "region", c.region, "with -regions, the `region` whose syncd a command talks to (import: only that region's rows)")
}

// loadRegions reads -regions, if given, before an admin command runs, and
// with -region points the command at that region's syncd.
func (c *cli) loadRegions(name string) error {
	if c.regionsFile == "" {
		if c.region != "" {
			return usagef("%s: -region %s picks a region of the regions file: give -regions FILE too (or FIELDCTL_REGIONS)", short(name), c.region)
		}
		return nil
	}
	var clash []string
	if c.server != defaultServer {
		clash = append(clash, "-server")
	}
	if c.tokenFile != defaultTokenFile {
		clash = append(clash, "-token-file")
	}
	if c.caFile != "" {
		clash = append(clash, "-ca-file")
	}
	if len(clash) > 0 {
		return usagef("%s: -regions and %s: the regions file names each region's server, CA and credential; give one or the other (the FIELDCTL_ variables count too)", short(name), strings.Join(clash, ", "))
	}
	f, err := readRegionsFile(c.regionsFile)
	if err != nil {
		return err
	}
	c.regions = f
	if c.region != "" {
		r := f.byName[c.region]
		if r == nil {
			return usagef("%s: -region %q is not in %s: want one of %s", short(name), c.region, f.path, strings.Join(f.names(), ", "))
		}
		c.useRegion(r)
	}
	return nil
}

// useRegion points the command at region r's syncd.
func (c *cli) useRegion(r *region) {
	c.server, c.tokenFile, c.caFile = r.Server, r.TokenFile, r.CA
	c.routed = r
}

// routeID points a command that names one user or household at the
// region its id names (with -regions; without, it does nothing). what
// names the flag ("-user").
func (c *cli) routeID(name, what, id string) error {
	if c.regions == nil {
		return nil
	}
	r, err := c.regions.regionOfID(what, id)
	if err != nil {
		return usagef("%s: %v", short(name), err)
	}
	if c.routed != nil && c.routed != r {
		return usagef("%s: -region %s, but %s %q is region %s's: leave out -region, the id says where it goes", short(name), c.routed.Name, what, id, r.Name)
	}
	c.useRegion(r)
	return nil
}

// sameRegion checks that a second id a command names is in the region the
// first routed it to.
func (c *cli) sameRegion(name, what, id, firstWhat, firstID string) error {
	if c.regions == nil {
		return nil
	}
	if got := domain.RegionOfID(id); got != c.routed.Name {
		in := "no region"
		if got != "" {
			in = "region " + got
		}
		return usagef("%s: %s %q lies in %s, %s %q in region %s: both must be in one region", short(name), what, id, in, firstWhat, firstID, c.routed.Name)
	}
	return nil
}

// checkRegionFiles says, for a command pointed at a region, when the
// region's credential or CA file is not there, in the regions file's
// terms (its line and column), rather than the -token-file and -ca-file
// hints.
func (c *cli) checkRegionFiles() error {
	if c.routed == nil {
		return nil
	}
	var errs []error
	if _, err := os.Stat(c.tokenFile); err != nil {
		errs = append(errs, fmt.Errorf("region %s (%s): token_file: %w: copy the region's <data>/admin.token there (syncd writes it at its first start)", c.routed.Name, c.regions.where(c.routed), err))
	}
	if !c.plaintext {
		if _, err := os.Stat(c.caPath()); err != nil {
			col := "ca"
			if c.caFile == "" {
				col = "ca (empty: tls/ca.pem beside token_file)"
			}
			errs = append(errs, fmt.Errorf("region %s (%s): %s: %w: copy the region's <data>/tls/ca.pem there (syncd makes it at its first start)", c.routed.Name, c.regions.where(c.routed), col, err))
		}
	}
	return errors.Join(errs...)
}

// regionNote adds to an error which region's syncd it came from.
func (c *cli) regionNote(err error) error {
	if err == nil || c.routed == nil {
		return err
	}
	return fmt.Errorf("region %s (%s): %w", c.routed.Name, c.regions.where(c.routed), err)
}
