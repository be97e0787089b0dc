package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

func adminCommand() *command {
	return withRegions(&command{
		name:    "admin",
		summary: "import the org, assign households, issue enrollment codes, manage devices, read the audit log",
		about: `fieldctl admin talks to syncd with the admin credential, which syncd writes
to <data>/admin.token when it first starts (sent as "authorization: Bearer"),
or with a person's own administrator token (fieldctl admin accounts).
fieldctl admin audit instead reads syncd's data directory on the server.

A province runs one syncd per region. -regions FILE names them, one CSV
row a region (paths relative to the file's directory; advertise, the
address phones reach the region at, is optional):

  region,server,ca,token_file,advertise
  xiaonan,10.0.1.5:7443,xiaonan/ca.pem,xiaonan/admin.token,xiaonan.example.cn:7443

Then import sends each row to the region its id starts with (xiaonan-...),
and enroll-code, assign, devices -user, users disable/enable and codes
-user go to the region of the id they name; devices alone lists every
region's; the other commands take -region NAME.`,
		flags: func(fs *flag.FlagSet, c *cli) {
			serverFlags(fs, c)
			regionFlags(fs, c)
		},
		sub: []*command{
			{name: "import", summary: "import units, users, households and assignments from CSV files", run: adminImport},
			{name: "assign", summary: "link a household to a party member", run: adminAssign},
			{name: "enroll-code", summary: "issue a one-time code that enrolls one device of a user", run: adminEnrollCode},
			{name: "devices", summary: "list enrolled devices", run: adminDevices},
			{name: "revoke", summary: "cut a device off and wipe its data at its next contact", run: adminRevoke},
			{name: "audit", summary: "list or verify the audit log, read from syncd's data directory", run: adminAudit},
			accountsCommand(),
			usersCommand(),
			codesCommand(),
			hqCredentialCommand(),
		},
	})
}

// withRegions makes every command below cmd read -regions (and -region)
// before it runs: commands that name one user or household then go to its
// region (routeID), the others to -region's.
func withRegions(cmd *command) *command {
	for _, s := range cmd.sub {
		withRegions(s)
	}
	if run := cmd.run; run != nil {
		cmd.run = func(ctx context.Context, c *cli, name string, args []string) error {
			if err := c.loadRegions(name); err != nil {
				return err
			}
			return run(ctx, c, name, args)
		}
	}
	return cmd
}

// importBatch is how many rows one ImportOrg call carries: a city's
// households take several calls, each one transaction on the server. A
// variable so that tests can cross batch boundaries with a small org.
var importBatch = 5000

func adminImport(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-dir] DIR [--json]", `
Reads the org from CSV files in DIR and upserts it by id, so importing the
same files twice changes nothing. Each file is optional and starts with a
header row naming its columns (any order; [optional]):

  units.csv        id,kind,parent_id,name           kind: town, village or grid
  users.csv        id,name,role,unit_id,[phone]      role: member, mediator,
                                                     secretary or hq
  households.csv   id,grid_id,head,[address],[phone],[members],[tags],
                   [retired]                         retired: a reason
  assignments.csv  household_id,member_id

A member's unit is their grid; a mediator's their village; a secretary's
their village, or their town for a town secretary; HQ's is empty.

A household given a grid in another village moves there with its visits:
the old village's phones drop them, the new village's get them. Moving a
unit (units.csv: a grid given another village, a village another town)
moves what lies in it: its households with their visits, a moved
village's events and disputes, and the people who work there; "records
moved" counts what was written again. A unit's kind cannot change.

A household row with a reason in "retired" retires the household (it
is voided: kept and marked, it takes no new visits, needs or projects);
a later row without one leaves it retired. Old files without the column
import as before.

Files are UTF-8 (Excel: "CSV UTF-8"). A row that cannot be used is
reported as file:line: column: message and skipped; the other rows are
imported, and the command then exits with status 1.

A province (-regions FILE, see fieldctl admin -h): each row goes to the
region its id starts with (units, users, households: id; assignments:
household_id), e.g. xiaonan-T01 to region xiaonan. A row whose region is
not in the regions file, or whose parent_id, unit_id, grid_id or
member_id lies in another region, is refused with its file:line, and
then nothing is sent to any region (nor when a row cannot be read): fix
the files and run again. Otherwise each region's rows go to its syncd,
one region after the other, with progress per region and a summary. A
region whose syncd fails does not stop the others; the command then
exits with status 1 naming it: run it again with -region NAME (only that
region's rows are sent; importing rows again changes nothing).`, `
fieldctl admin import -dir examples/org
fieldctl admin -server 10.0.0.5:7443 -token-file /srv/fieldsync/admin.token import -dir org --json
fieldctl admin -regions examples/province/regions.csv import examples/province
fieldctl admin -regions examples/province/regions.csv -region yunmeng import examples/province --json`)
	dir := fs.String("dir", "", "`directory` holding units.csv, users.csv, households.csv, assignments.csv (or give it after the flags)")
	asJSON := fs.Bool("json", false, "print the counts and errors as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *dir == "" && len(pos) == 1 {
		*dir = pos[0]
	} else if len(pos) > 0 {
		return usagef("%s: unexpected argument %q: give the directory once, as -dir DIR or DIR (see %s -h)", short(name), pos[len(pos)-1], name)
	}
	if *dir == "" {
		return usagef("%s: -dir is required: the directory of the org's CSV files", short(name))
	}
	org, err := readOrg(*dir, c.stderr)
	if err != nil {
		return err
	}
	if c.regions != nil {
		return c.importProvince(ctx, org, *asJSON)
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, serverErrs, err := c.sendOrg(actx, pb.NewAdminServiceClient(conn), org, "")
	if err != nil {
		return err
	}
	errs := append(org.errs, serverErrs...)
	sortRowErrors(errs)

	if *asJSON {
		out := importCounts{res.Units, res.Users, res.Households, res.Assignments, res.RecordsMoved, len(errs), errs}
		if out.Errors == nil {
			out.Errors = []rowError{}
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return err
		}
	} else {
		for _, e := range errs {
			fmt.Fprintln(c.stderr, escapeLines(e.String()))
		}
		t := newTable()
		t.add("units", fmt.Sprint(res.Units))
		t.add("users", fmt.Sprint(res.Users))
		t.add("households", fmt.Sprint(res.Households))
		t.add("assignments", fmt.Sprint(res.Assignments))
		t.add("records moved", fmt.Sprint(res.RecordsMoved))
		t.add("rejected", fmt.Sprint(len(errs)))
		if err := t.write(c.stdout); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s rejected (listed above); the other rows were imported", plural(len(errs), "row", "rows"))
	}
	return nil
}

// sendOrg sends the org's rows to one syncd in batches of importBatch
// rows and returns the summed counts and the rows it rejected, named by
// file and line. prefix starts the progress lines ("xiaonan: ").
func (c *cli) sendOrg(actx context.Context, admin pb.AdminServiceClient, org *orgRows, prefix string) (*pb.ImportOrgResponse, []rowError, error) {
	type part struct {
		table string
		start int // index in org's slice of the first row of this batch
	}
	total := len(org.units) + len(org.users) + len(org.households) + len(org.assignments)
	var (
		res   = &pb.ImportOrgResponse{}
		req   = &pb.ImportOrgRequest{}
		parts []part
		rows  int
		sent  int
		errs  []rowError
	)
	flush := func() error {
		if rows == 0 {
			return nil
		}
		resp, err := admin.ImportOrg(actx, req)
		if err != nil {
			if sent > 0 {
				return c.rpcError(fmt.Sprintf("import (the first %d rows are stored; run the import again)", sent), err)
			}
			return c.rpcError("import", err)
		}
		res.Units += resp.GetUnits()
		res.Users += resp.GetUsers()
		res.Households += resp.GetHouseholds()
		res.Assignments += resp.GetAssignments()
		res.RecordsMoved += resp.GetRecordsMoved()
		for _, e := range resp.GetErrors() {
			start := -1
			for _, p := range parts {
				if p.table == e.GetTable() {
					start = p.start
				}
			}
			re := rowError{File: e.GetTable() + ".csv", Table: e.GetTable(), Column: e.GetField(), Message: e.GetMessage()}
			if lines := org.lines[e.GetTable()]; start >= 0 && start+int(e.GetIndex()) < len(lines) {
				re.Line = lines[start+int(e.GetIndex())]
			}
			errs = append(errs, re)
		}
		sent += rows
		if total > importBatch {
			fmt.Fprintf(c.stderr, "fieldctl: %s%d of %d rows sent\n", prefix, sent, total)
		}
		req, parts, rows = &pb.ImportOrgRequest{}, nil, 0
		return nil
	}
	// Fill each request up to importBatch rows, tables in order, so that a
	// small org goes in one call and parents always precede children.
	add := func(table string, n int, take func(from, to int)) error {
		for i := 0; i < n; {
			k := min(n-i, importBatch-rows)
			parts = append(parts, part{table: table, start: i})
			take(i, i+k)
			i, rows = i+k, rows+k
			if rows == importBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, step := range []func() error{
		func() error {
			return add("units", len(org.units), func(a, b int) { req.Units = org.units[a:b] })
		},
		func() error {
			return add("users", len(org.users), func(a, b int) { req.Users = org.users[a:b] })
		},
		func() error {
			return add("households", len(org.households), func(a, b int) { req.Households = org.households[a:b] })
		},
		func() error {
			return add("assignments", len(org.assignments), func(a, b int) { req.Assignments = org.assignments[a:b] })
		},
		flush,
	} {
		if err := step(); err != nil {
			return res, errs, err
		}
	}
	return res, errs, nil
}

func adminAssign(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-household H -member U", `
Links a household to a party member, replacing its current link. The new
member's devices receive the household (and its visits) at their next sync;
the previous member's devices remove it. Prints the previous member.`, `
fieldctl admin assign -household H0006 -member U-m1`)
	household := fs.String("household", "", "household `id`")
	member := fs.String("member", "", "member's user `id`")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *household == "" || *member == "" {
		return usagef("%s: -household and -member are required", short(name))
	}
	if err := c.routeID(name, "-household", *household); err != nil {
		return err
	}
	if err := c.sameRegion(name, "-member", *member, "-household", *household); err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: *household, MemberId: *member})
	if err != nil {
		return c.rpcError("assign", err)
	}
	prev := resp.GetPreviousMemberId()
	if prev == "" {
		prev = "nobody"
	}
	fmt.Fprintf(c.stdout, "%s linked to %s (previously %s)\n", *household, *member, prev)
	return nil
}

func adminEnrollCode(ctx context.Context, c *cli, name string, args []string) error {
	ttl := 24 * time.Hour
	fs := c.newFlags(name, "-user U [-ttl 24h] [-q | --json] [-qr] [-qr-png FILE]", `
Issues a one-time enrollment code for a user, as fieldsync://HOST:PORT/CODE?ca=FINGERPRINT:
the address phones reach syncd at (-advertise) and the fingerprint of syncd's
CA, which the phone pins. The code enrolls one device (fieldctl device
enroll CODE) and expires after -ttl (at most 30 days). It is shown once:
syncd keeps only its hash.

With -regions FILE (fieldctl admin -h), the code is issued by the syncd
of the region the user id names (xiaonan-U-m1: region xiaonan) and
carries that region's advertise address (else its server), so the phone
talks to its own region only.

For a phone's camera: -qr draws the code as a QR code in the terminal,
after the text code. It sets its own colours, black on white (with a
white border, the quiet zone), so it reads on a dark or a light terminal
alike; make the window at least 60 columns wide and 30 lines tall.
-qr-png FILE writes the same QR code as a PNG image (mode 0600, replacing
FILE if it exists), to print or to show on another screen. The image IS
the code: whoever scans it can enroll a device until it is used or
expires, so delete the file once the phone has enrolled. -qr-png works
with -q and --json (which then names the file, never more of the code);
-qr draws on the terminal, so it does not mix with them.`, `
fieldctl admin enroll-code -user U-m1 -advertise 10.0.0.5:7443
fieldctl admin enroll-code -user U-m1 -advertise 10.0.0.5:7443 -qr
fieldctl admin enroll-code -user U-med1 -ttl 7d --json -qr-png med1.png
fieldctl device -db phone.db enroll $(fieldctl admin enroll-code -user U-m1 -q)
fieldctl admin -regions province/regions.csv enroll-code -user xiaonan-U-m1 -qr`)
	user := fs.String("user", "", "user `id`")
	fs.Var(durationFlag{&ttl}, "ttl", "how long the code is valid, e.g. 24h, 90m or 7d")
	asJSON := fs.Bool("json", false, "print the code as a JSON object")
	quiet := fs.Bool("q", false, "print only the enrollment code, for scripts")
	advertise := fs.String("advertise", "", "the `address` (host:port) phones reach syncd at, put in the code (default -server)")
	drawQR := fs.Bool("qr", false, "also draw the code as a QR code in the terminal (black on white, for a dark or light terminal)")
	pngPath := fs.String("qr-png", "", "also write the code as a QR code to this PNG `file` (0600: it is the secret code)")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *user == "" {
		return usagef("%s: -user is required: the user whose device the code enrolls", short(name))
	}
	if err := c.routeID(name, "-user", *user); err != nil {
		return err
	}
	if ttl < time.Second {
		return usagef("%s: -ttl %v: want at least 1s", short(name), ttl)
	}
	if *drawQR && (*quiet || *asJSON) {
		return usagef("%s: -qr draws on the terminal and -q/--json are for scripts: use -qr-png FILE with them", short(name))
	}
	// Opened before the code is issued: a path that cannot be written
	// fails here, not after a code exists that nobody sees.
	var png *qrPNGFile
	if *pngPath != "" {
		f, err := createQRPNG(*pngPath)
		if err != nil {
			return err
		}
		png = f
		defer png.discard()
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: *user, TtlSeconds: int64(ttl / time.Second)})
	if err != nil {
		return c.rpcError("enrollment code", err)
	}
	// The code a phone needs carries the address it reaches syncd at and
	// the CA fingerprint it pins.
	fp, err := c.caFingerprint()
	if err != nil {
		return err
	}
	addr := *advertise
	switch {
	case addr != "":
	case c.routed != nil:
		addr = c.routed.phoneAddr() // the region's advertise, else its server
	default:
		addr = c.server
	}
	enrollment := syncer.FormatEnrollment(addr, resp.GetCode(), fp)
	// The code exists now: it is printed whatever happens to the QR code,
	// and a QR code that fails is reported after it.
	var (
		q     *qrcode.QRCode
		qrErr error
	)
	if *drawQR || png != nil {
		q, qrErr = newEnrollQR(enrollment)
		if qrErr == nil && png != nil {
			qrErr = png.write(q)
		}
	}
	if *quiet {
		if _, err := fmt.Fprintln(c.stdout, enrollment); err != nil {
			return err
		}
		return qrErr
	}
	if *asJSON {
		out := map[string]any{"enrollment": enrollment, "code": resp.GetCode(), "user_id": *user,
			"expires_ms": resp.GetExpiresMs(), "expires": rfc3339(resp.GetExpiresMs())}
		if c.routed != nil {
			out["region"] = c.routed.Name
		}
		if png != nil && qrErr == nil {
			out["qr_png"] = *pngPath // where the image is, not what it holds
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return err
		}
		return qrErr
	}
	t := newTable()
	t.add("enrollment", enrollment)
	t.add("user", *user)
	if c.routed != nil {
		t.add("region", c.routed.Name)
	}
	t.add("expires", fmtTime(resp.GetExpiresMs()))
	if png != nil && qrErr == nil {
		t.add("qr png", *pngPath)
	}
	if err := t.write(c.stdout); err != nil {
		return err
	}
	if qrErr != nil {
		return qrErr
	}
	if *drawQR {
		fmt.Fprintln(c.stdout)
		if err := writeQRTerminal(c.stdout, q); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stderr, "fieldctl: on the device: fieldctl device enroll '%s'\n", enrollment)
	return nil
}

// deviceJSON is a device as fieldctl admin devices --json prints it.
type deviceJSON struct {
	Region       string `json:"region,omitempty"` // with -regions
	ID           string `json:"id"`
	UserID       string `json:"user_id"`
	Name         string `json:"name"`
	AppVersion   string `json:"app_version"`
	EnrolledMs   int64  `json:"enrolled_ms"`
	LastSeenMs   int64  `json:"last_seen_ms"`
	LastSeq      uint64 `json:"last_seq"`
	PendingCount uint32 `json:"pending"`
	RevokedMs    int64  `json:"revoked_ms"`
	Revoked      bool   `json:"revoked"`
	// When the device's numbering last went back (its database restored
	// from an older copy), and how often it did.
	RestoredMs int64  `json:"restored_ms"`
	Restores   uint32 `json:"restores"`
	// What it pushed on the current quota day (China time): mutations,
	// their bytes, and pushes held back for a daily quota.
	QuotaRecordsToday  int64 `json:"quota_records_today"`
	QuotaBytesToday    int64 `json:"quota_bytes_today"`
	QuotaRefusalsToday int64 `json:"quota_refusals_today"`
}

func adminDevices(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-user U] [--json]", `
Lists enrolled devices (every page): id, user, name, app version, when last
seen, the last mutation number applied, how many mutations the device said
it still held, whether it is revoked, and when its database was last
restored from an older copy (and how often: its numbering went back).
TODAY is what the device pushed on the current quota day (a calendar day
in China time): records and bytes, and "held N" for the N pushes the daily
quota held back (syncd -device-quota, -user-quota).

With -regions: -user U lists U's devices at U's region; -region NAME that
region's; neither, every region's (a REGION column; a region that cannot
be reached is reported, the others listed, and the status is 1).`, `
fieldctl admin devices
fieldctl admin devices -user U-m1 --json
fieldctl admin -regions province/regions.csv devices`)
	user := fs.String("user", "", "only this user's devices")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *user != "" {
		if err := c.routeID(name, "-user", *user); err != nil {
			return err
		}
	}
	// With -regions and neither -user nor -region: every region's devices,
	// each named by its region; a region that cannot be reached is
	// reported and the others listed.
	var (
		devs   = []deviceJSON{}
		failed []string
	)
	if c.regions != nil && c.routed == nil {
		for _, r := range c.regions.regions {
			ds, err := c.forRegion(r).listDevices(ctx, *user)
			if err != nil {
				fmt.Fprintf(c.stderr, "fieldctl: %s: %s\n", r.Name, escapeLines(err.Error()))
				failed = append(failed, r.Name)
				continue
			}
			devs = append(devs, ds...)
		}
	} else {
		ds, err := c.listDevices(ctx, *user)
		if err != nil {
			return err
		}
		devs = ds
	}
	if err := c.writeDevices(devs, *asJSON); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("the devices of %s are not listed (above): the other regions' are", strings.Join(failed, ", "))
	}
	return nil
}

// listDevices reads every page of one syncd's devices (of user, or all).
func (c *cli) listDevices(ctx context.Context, user string) ([]deviceJSON, error) {
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	admin := pb.NewAdminServiceClient(conn)
	region := ""
	if c.routed != nil {
		region = c.routed.Name
	}
	devs := []deviceJSON{}
	for token := ""; ; {
		resp, err := admin.ListDevices(actx, &pb.ListDevicesRequest{PageSize: 1000, PageToken: token, UserId: user})
		if err != nil {
			return nil, c.rpcError("list devices", err)
		}
		for _, d := range resp.GetDevices() {
			devs = append(devs, deviceJSON{Region: region, ID: d.GetId(), UserID: d.GetUserId(), Name: d.GetName(), AppVersion: d.GetAppVersion(),
				EnrolledMs: d.GetEnrolledMs(), LastSeenMs: d.GetLastSeenMs(), LastSeq: d.GetLastSeq(), PendingCount: d.GetPendingCount(),
				RevokedMs: d.GetRevokedMs(), Revoked: d.GetRevokedMs() != 0, RestoredMs: d.GetRestoredMs(), Restores: d.GetRestores(),
				QuotaRecordsToday: d.GetQuotaRecordsToday(), QuotaBytesToday: d.GetQuotaBytesToday(), QuotaRefusalsToday: d.GetQuotaRefusalsToday()})
		}
		if token = resp.GetNextPageToken(); token == "" {
			return devs, nil
		}
	}
}

// writeDevices prints devices as a table (with a REGION column under
// -regions) or JSON.
func (c *cli) writeDevices(devs []deviceJSON, asJSON bool) error {
	if asJSON {
		return writeJSON(c.stdout, devs)
	}
	header := []string{"ID", "USER", "NAME", "APP VERSION", "LAST SEEN", "LAST SEQ", "PENDING", "REVOKED", "RESTORED", "TODAY"}
	if c.regions != nil {
		header = append([]string{"REGION"}, header...)
	}
	t := newTable(header...)
	for _, d := range devs {
		revoked, restored := "no", "no"
		if d.Revoked {
			revoked = fmtTime(d.RevokedMs)
		}
		if d.Restores > 0 {
			restored = fmt.Sprintf("%s (%dx)", fmtTime(d.RestoredMs), d.Restores)
		}
		row := []string{d.ID, d.UserID, d.Name, d.AppVersion, fmtTime(d.LastSeenMs), fmt.Sprint(d.LastSeq), fmt.Sprint(d.PendingCount), revoked, restored, quotaToday(d)}
		if c.regions != nil {
			row = append([]string{d.Region}, row...)
		}
		t.add(row...)
	}
	return t.write(c.stdout)
}

func adminRevoke(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-device D", `
Revokes a device: syncd refuses it from now on, and at its next contact the
device wipes its local data. Mutations it has not synced are lost with it.`, `
fieldctl admin revoke -device dabcdefgh`)
	device := fs.String("device", "", "device `id` (see fieldctl admin devices)")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *device == "" {
		return usagef("%s: -device is required", short(name))
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := pb.NewAdminServiceClient(conn).RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: *device}); err != nil {
		return c.rpcError("revoke", err)
	}
	fmt.Fprintf(c.stdout, "revoked %s: it is refused from now on and wipes its data at its next contact\n", *device)
	return nil
}

// auditJSON is an audit entry as fieldctl admin audit --json prints it.
type auditJSON struct {
	Seq      uint64 `json:"seq"`
	TimeMs   int64  `json:"time_ms"`
	Time     string `json:"time"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Target   string `json:"target"`
	Detail   string `json:"detail"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	Mac      string `json:"mac"` // "" for an entry from before the audit key
}

func adminAudit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-data DIR] [-after N] [-limit N] [-verify] [--json]", `
Lists the audit log: every administrator's action (import, assign,
enrollment code, revoke, accounts, users, codes, HQ credentials) and every
device enrollment, in order,
each with who (admin:<account>, admin:owner for admin.token, or a device
id), what, to what and a JSON detail. Enrollment codes are never logged,
only a reference (code_ref) that matches the enrolling device's entry.

The log is read from syncd's database in its data directory (syncd may be
running; nothing is written), so run this on the server. Each entry carries
the SHA-256 of its content and of the entry before it, and an HMAC of that
under the key in <data>/audit.key, which is not in the database. syncd
publishes each entry's number and MAC to its NATS (stream FIELDSYNC_AUDIT).

-verify checks the whole chain and every MAC with the key, and compares the
log with the last entry published to NATS; it exits with status 1, naming
the entry, if an entry was altered, removed, or cut off the end. Entries
from before the key (older syncd) are checked by hash only ("unkeyed").`, `
fieldctl admin audit -data /srv/fieldsync/data
fieldctl admin audit -data ./data -verify
fieldctl admin audit -after 120 --json`)
	data := fs.String("data", "./data", "syncd's data `directory` (holding fieldsync.db)")
	after := fs.Uint64("after", 0, "list the entries after this `seq`")
	limit := fs.Int("limit", 0, "list at most `N` entries (0: all)")
	verify := fs.Bool("verify", false, "check the hash chain, the MACs and the published head instead of listing")
	keyFile := fs.String("key-file", "", "the audit key `file` for -verify (default <data>/audit.key)")
	natsURL := fs.String("nats", "", "NATS `URL` to read the published head from, for -verify (default: from <data>/nats.url)")
	noNATS := fs.Bool("no-nats", false, "with -verify, check the database alone: entries cut off the end then go unseen")
	natsNKey := fs.String("nats-nkey", "", "with -verify, the NKey seed `file` to read the head with (default <data>/nats-syncd.nk, syncd's own key on its embedded NATS)")
	natsCreds := fs.String("nats-creds", "", "with -verify, a NATS .creds `file` to read the head with (an external NATS, syncd's -nats-creds)")
	natsCA := fs.String("nats-ca", "", "with -verify, the CA `file` (PEM) NATS's certificate is checked against (default for a tls:// URL: <data>/tls/ca.pem)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("%s: -limit %d: want 0 (all) or more", short(name), *limit)
	}
	path := filepath.Join(*data, "fieldsync.db")
	al, err := store.OpenAuditReader(ctx, path)
	if err != nil {
		return fmt.Errorf("%w (-data names syncd's data directory)", err)
	}
	defer al.Close()
	if *verify {
		return auditVerify(ctx, c, al, auditSources{data: *data, keyFile: *keyFile, natsURL: *natsURL, noNATS: *noNATS,
			nkey: *natsNKey, creds: *natsCreds, ca: *natsCA}, *asJSON)
	}
	entries := []auditJSON{}
	for at := *after; ; {
		page := 1000
		if *limit > 0 {
			page = min(page, *limit-len(entries))
		}
		if page == 0 {
			break
		}
		es, err := al.Entries(ctx, at, page)
		if err != nil {
			return err
		}
		for _, e := range es {
			entries = append(entries, auditJSON{Seq: e.Seq, TimeMs: e.TimeMs, Time: rfc3339(e.TimeMs), Actor: e.Actor,
				Action: e.Action, Target: e.Target, Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash, Mac: e.Mac})
			at = e.Seq
		}
		if len(es) < page {
			break
		}
	}
	if *asJSON {
		return writeJSON(c.stdout, entries)
	}
	t := newTable("SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL")
	for _, e := range entries {
		t.add(fmt.Sprint(e.Seq), fmtTime(e.TimeMs), e.Actor, e.Action, e.Target, e.Detail)
	}
	return t.write(c.stdout)
}

// auditSources say where -verify finds what lies outside the database.
type auditSources struct {
	data, keyFile, natsURL string
	noNATS                 bool
	nkey, creds, ca        string // NATS credential and CA; default syncd's own
}

// auditAnchor reads the audit key and the last head published to NATS.
func auditAnchor(ctx context.Context, src auditSources) ([]byte, *store.AuditHead, error) {
	keyFile := src.keyFile
	if keyFile == "" {
		keyFile = filepath.Join(src.data, "audit.key")
	}
	key, err := store.ReadAuditKey(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (-key-file names it; syncd makes it at its first start: restore it from its backup)", err)
	}
	if src.noNATS {
		return key, nil, nil
	}
	url := src.natsURL
	if url == "" {
		b, err := os.ReadFile(filepath.Join(src.data, "nats.url"))
		if err != nil {
			return nil, nil, fmt.Errorf("read the NATS URL: %w (give -nats URL, or -no-nats to check the database alone)", err)
		}
		url = strings.TrimSpace(string(b))
	}
	// The audit heads are syncd's own stream: read with syncd's own NATS
	// key in the data directory (the embedded NATS takes no connection
	// without one) and its CA; an external NATS (syncd -nats) takes
	// syncd's credential there.
	opts, err := natsOptions("fieldctl admin audit", url, src.nkey, src.creds, src.ca, src.data)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w (is syncd running? give -nats URL and, for an external NATS, -nats-creds or -nats-nkey; or -no-nats to check the database alone)", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	head, err := server.LatestAuditHead(ctx, js, domain.AuditHeadSubject(key))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (or -no-nats to check the database alone)", err)
	}
	return key, head, nil
}

func auditVerify(ctx context.Context, c *cli, al *store.AuditReader, src auditSources, asJSON bool) error {
	key, head, err := auditAnchor(ctx, src)
	if err != nil {
		return err
	}
	rep, err := al.Check(ctx, key, head)
	last := rep.Last
	var broken *store.AuditError
	if err != nil && !errors.As(err, &broken) {
		return err
	}
	if asJSON {
		out := map[string]any{"ok": err == nil, "entries": last.Seq, "head_seq": last.Seq, "head_hash": last.Hash, "head_mac": last.Mac,
			"unkeyed": rep.Unkeyed, "published_seq": nil, "unpublished": rep.Unpublished}
		if head != nil {
			out["published_seq"] = head.Seq
		}
		if broken != nil {
			out = map[string]any{"ok": false, "verified": last.Seq, "seq": broken.Seq, "problem": broken.Problem}
		}
		if werr := writeJSON(c.stdout, out); werr != nil {
			return werr
		}
	} else if err == nil {
		fmt.Fprintf(c.stdout, "audit log intact: %s; last entry %d (%s) hash %s\n",
			plural(int(last.Seq), "entry", "entries"), last.Seq, fmtTime(last.TimeMs), last.Hash)
		if rep.Unkeyed > 0 {
			fmt.Fprintf(c.stdout, "entries 1 to %d are unkeyed (written before the audit key): checked by hash only\n", rep.Unkeyed)
		}
		switch {
		case src.noNATS:
			fmt.Fprintln(c.stdout, "not compared with NATS (-no-nats): entries cut off the end would not show")
		case head == nil:
			fmt.Fprintln(c.stdout, "no head published to NATS yet (stream FIELDSYNC_AUDIT): entries cut off the end would not show")
		default:
			fmt.Fprintf(c.stdout, "matches the head published to NATS (entry %d); %s not yet published\n", head.Seq, plural(int(rep.Unpublished), "entry", "entries"))
		}
	}
	if broken != nil {
		good := "no entry before it checks out"
		if last.Seq > 0 {
			good = fmt.Sprintf("entries 1 to %d check out", last.Seq)
		}
		return fmt.Errorf("%w; %s: compare with a backup of the database to see what was changed", broken, good)
	}
	return nil
}

// quotaToday is a device's use of its daily quota: "12 rec, 40KiB" and
// ", held 3" when pushes were held back.
func quotaToday(d deviceJSON) string {
	s := fmt.Sprintf("%d rec, %s", d.QuotaRecordsToday, fmtBytes(d.QuotaBytesToday))
	if d.QuotaRefusalsToday > 0 {
		s += fmt.Sprintf(", held %d", d.QuotaRefusalsToday)
	}
	return s
}

// fmtBytes writes a byte count rounded to B, KiB or MiB.
func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
