package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/cliflags"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

func deviceCommand() *command {
	return &command{
		name:    "device",
		summary: "a field device in a local database: enroll, record visits, needs, projects, disputes, events; sync",
		about: `fieldctl device is a field device whose data lives in the -db file. Every
write works offline: it is checked, queued and shown at once, and sent at the
next sync. Enroll the database once with a code from fieldctl admin
enroll-code.

With -key-file the database is encrypted at rest (AES-256-GCM, value by
value): households, visits, texts and the device's credential cannot be
read from the file without the key, and every later command needs the
same key. Without -key-file the database is PLAIN: whoever can read the
file reads them all. A plain database given a key is encrypted in place.
Make a key with: head -c 32 /dev/urandom > phone.key (keep it 0600, apart
from the database).`,
		flags: func(fs *flag.FlagSet, c *cli) {
			fs.StringVar(&c.db, "db", c.db, "the device database `file` (created by enroll)")
			fs.StringVar(&c.keyFile, "key-file", c.keyFile, "the `file` holding the database's key: 32 raw bytes or 64 hex digits; without it the database is plain (not encrypted)")
			fs.Var(cliflags.Checked(&c.lang, cliflags.OneOf(domain.LangZH, domain.LangEN)), "lang",
				"the `language` of statuses, categories, kinds and fields in tables: zh (简体中文) or en; --json keeps the machine names")
		},
		sub: []*command{
			{name: "enroll", summary: "enroll this device with a one-time code", run: deviceEnroll},
			{name: "visit", summary: "record or amend a visit to a household",
				about: "Visits: one a month by a party member to each linked household; amended only by its author.",
				sub: []*command{
					{name: "add", summary: "record a visit (prints its id)", run: visitAdd},
					{name: "amend", summary: "change fields of your visit", run: visitAmend},
				}},
			{name: "household", summary: "edit a household's details",
				about: "Households are imported by the administrator; members and secretaries edit some fields.",
				sub: []*command{
					{name: "edit", summary: "change fields of a household", run: householdEdit},
				}},
			{name: "dispute", summary: "open and work a mediation case, or report one",
				about: "Disputes: mediation cases of the \"five small\" kinds, worked by their mediators;\na member reports one seen on a visit.",
				sub: []*command{
					{name: "open", summary: "open a case (prints its id)", run: disputeOpen},
					{name: "report", summary: "report a quarrel or hazard seen on a visit (a member; prints its id)", run: disputeReport},
					{name: "status", summary: "move a case to another status", run: disputeStatus},
					{name: "note", summary: "add a note to a case", run: disputeAppend("notes", "note")},
					{name: "session", summary: "record a mediation session", run: disputeAppend("sessions", "session")},
					{name: "edit", summary: "change a case's title, parties, agreement, outcome ...", run: disputeEdit},
				}},
			{name: "event", summary: "log an event (meeting, party day, service request ...)",
				about: "Events: an append-only log, each device's entries chained by hash.",
				sub: []*command{
					{name: "add", summary: "log an event (prints its id)", run: eventAdd},
				}},
			needCommand(),
			projectCommand(),
			{name: "void", summary: "void a visit, event, need or project entered by mistake, with a reason", run: deviceVoid},
			{name: "conflicts", summary: "the conflict inbox: fields that concurrent writes left in conflict", run: deviceConflicts},
			{name: "settle", summary: "settle a conflict: keep mine, take theirs, or enter a new value", run: deviceSettle},
			{name: "assign", summary: "link a household to a member of the village (village secretary)", run: deviceAssign},
			{name: "unassign", summary: "unlink a household from its member (village secretary)", run: deviceUnassign},
			{name: "list", summary: "list the records on this device", run: deviceList},
			{name: "show", summary: "show one record: fields, entries, conflicts, state", run: deviceShow},
			{name: "status", summary: "who this device is, what waits to sync, the last sync", run: deviceStatus},
			{name: "rejections", summary: "list the changes the server refused, with reasons", run: deviceRejections},
			{name: "sync", summary: "sync once: send pending changes, receive updates", run: deviceSync},
			{name: "run", summary: "sync in the background until Ctrl-C", run: deviceRun},
		},
	}
}

// openDevice opens the device database, which must exist: only enroll
// creates one.
func (c *cli) openDevice() (*syncer.Device, error) {
	if _, err := os.Stat(c.db); errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("no device database at %s: enroll first (fieldctl device -db %s enroll CODE), or give -db", c.db, c.db)
	}
	return c.openDeviceFile()
}

// openDeviceFile opens (creating) the device database with the key of
// -key-file, if given.
func (c *cli) openDeviceFile() (*syncer.Device, error) {
	key, err := c.deviceKey()
	if err != nil {
		return nil, err
	}
	d, err := syncer.OpenWith(c.db, &syncer.Options{AppVersion: appVersion, Key: key})
	if errors.Is(err, syncer.ErrWrongKey) {
		if key == nil {
			return nil, fmt.Errorf("%w: %s is encrypted: give -key-file (or FIELDCTL_KEY_FILE) with its key", err, c.db)
		}
		return nil, fmt.Errorf("%w: %s was encrypted with another key than %s's", err, c.db, c.keyFile)
	}
	return d, err
}

// deviceKey reads -key-file: 32 raw bytes, or 64 hex digits (spaces and a
// final newline allowed around them). No -key-file: nil, a plain database.
func (c *cli) deviceKey() ([]byte, error) {
	if c.keyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("-key-file: %w", err)
	}
	if len(b) == 32 {
		return b, nil
	}
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		if key, err := hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("-key-file %s: %d bytes, not a key: want 32 raw bytes (head -c 32 /dev/urandom) or 64 hex digits", c.keyFile, len(b))
}

// withDevice opens the device, runs fn and closes it.
func (c *cli) withDevice(fn func(d *syncer.Device) error) error {
	d, err := c.openDevice()
	if err != nil {
		return err
	}
	return errors.Join(fn(d), d.Close())
}

func deviceEnroll(ctx context.Context, c *cli, name string, args []string) error {
	host, _ := os.Hostname()
	fs := c.newFlags(name, "[-name NAME] CODE", `
Enrolls the device database (-db, created here) with the enrollment code
from fieldctl admin enroll-code. The code carries the server's address and
its CA's fingerprint: the device connects over TLS and pins that CA, so no
other set-up is needed, and a server with another certificate is refused.
syncd returns the device's credential, kept in the database. Then run
fieldctl device sync to receive the records in the user's scope.`, `
fieldctl device -db phone.db enroll -name "張國華的手機" 'fieldsync://10.0.0.5:7443/abcdefghijklmnop?ca=5f1c…'`)
	devName := fs.String("name", "fieldctl on "+host, "the device's `name`, shown to the administrator")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("%s: want one argument, the enrollment code (see %s -h)", short(name), name)
	}
	_, statErr := os.Stat(c.db)
	created := errors.Is(statErr, iofs.ErrNotExist)
	d, err := c.openDeviceFile()
	var id *syncer.Identity
	if err == nil {
		err = d.Enroll(ctx, args[0], *devName)
		if err == nil {
			id, err = d.Identity()
		}
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		if created { // leave no half-made database behind
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(c.db + suffix)
			}
		}
		return err
	}
	fmt.Fprintf(c.stdout, "enrolled %s as device %s of %s %s (%s) at %s\n", c.db, domain.EscapeText(id.DeviceID), domain.EscapeText(id.UserID),
		domain.EscapeText(id.UserName), domain.EscapeText(id.Role), domain.EscapeText(id.Server))
	fmt.Fprintf(c.stderr, "next: fieldctl device -db %s sync\n", c.db)
	return nil
}

// fieldFlag maps a command line flag to a record field.
type fieldFlag struct {
	flag, field, usage string
}

// fieldFlags defines the flags of ff on fs; fields returns the fields of
// the flags given on the command line, and how many.
func fieldFlags(fs *flag.FlagSet, ff []fieldFlag) (fields func() (*syncer.Fields, int)) {
	vals := make([]*string, len(ff))
	for i, f := range ff {
		vals[i] = fs.String(f.flag, "", f.usage)
	}
	return func() (*syncer.Fields, int) {
		set := given(fs)
		out, n := syncer.NewFields(), 0
		for i, f := range ff {
			if set[f.flag] {
				out.Set(f.field, *vals[i])
				n++
			}
		}
		return out, n
	}
}

func flagNames(ff []fieldFlag) string {
	names := make([]string, len(ff))
	for i, f := range ff {
		names[i] = "-" + f.flag
	}
	return strings.Join(names, ", ")
}

// required reports the first of flags that was not given.
func required(name string, fs *flag.FlagSet, flags ...string) error {
	set := given(fs)
	for _, f := range flags {
		if !set[f] {
			return usagef("%s: -%s is required (see %s -h)", short(name), f, name)
		}
	}
	return nil
}

// today is the device's date, for events logged without -date.
func (c *cli) today() string { return c.now().Format("2006-01-02") }

var visitFields = []fieldFlag{
	{"met", "met", "who was met, e.g. 戶主及其母親"},
	{"needs", "needs", "needs or difficulties raised (困難)"},
	{"help", "help", "help given"},
	{"follow-up", "follow_up", "what to follow up"},
}

func visitAdd(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-household H -date YYYY-MM-DD [-met ...] [-needs ...] [-help ...] [-follow-up ...]", `
Records a visit to one of your linked households and prints its id. Works
offline: the visit is pending until the next sync.`, `
fieldctl device visit add -household H0001 -date 2026-11-20 -met 戶主 -needs "屋頂漏水，需要修繕"`)
	ff := append([]fieldFlag{{"household", "household_id", "the household's `id`"}, {"date", "visited_on", "the day of the visit, YYYY-MM-DD"}}, visitFields...)
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "household", "date"); err != nil {
		return err
	}
	f, _ := fields()
	return c.create("visit", f)
}

func (c *cli) create(kind string, f *syncer.Fields) error {
	return c.withDevice(func(d *syncer.Device) error {
		id, err := d.Create(kind, f)
		if err != nil {
			return err // a *domain.Rejection reads "visit.visited_on: ..."
		}
		fmt.Fprintln(c.stdout, id)
		return nil
	})
}

func (c *cli) update(id string, f *syncer.Fields) error {
	return c.withDevice(func(d *syncer.Device) error {
		if err := d.Update(id, f); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s changed: pending until the next sync\n", id)
		return nil
	})
}

func visitAmend(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id ID [-date ...] [-met ...] [-needs ...] [-help ...] [-follow-up ...]", `
Changes fields of a visit you recorded. Only the flags given are changed;
give a flag with "" to clear its field.`, `
fieldctl device visit amend -id 0193... -help "已聯繫村委會安排維修" -follow-up ""`)
	id := fs.String("id", "", "the visit's `id`")
	ff := append([]fieldFlag{{"date", "visited_on", "the day of the visit, YYYY-MM-DD"}}, visitFields...)
	return c.edit(name, fs, id, ff, args)
}

func householdEdit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id H [-head ...] [-address ...] [-phone ...] [-members N] [-tags ...] [-needs ...]", `
Changes fields of a household. A member may change phone, members, tags
and needs of a linked household; a secretary also head and address, in
their village. Only the flags given are changed.`, `
fieldctl device household edit -id H0003 -members 3 -needs "孫子上學需要助學金"`)
	id := fs.String("id", "", "the household's `id`")
	ff := []fieldFlag{
		{"head", "head", "head of the household"},
		{"address", "address", "address"},
		{"phone", "phone", "contact phone"},
		{"members", "members", "how many people live in it, 0-99"},
		{"tags", "tags", "tags, e.g. 低保戶,獨居老人"},
		{"needs", "needs", "current needs"},
	}
	return c.edit(name, fs, id, ff, args)
}

func disputeOpen(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-category C -title T [-parties ...] [-village V] [-mediators U1,U2]", `
Opens a mediation case and prints its id. You are one of its mediators; add
others with -mediators. It is filed in your village unless -village says
otherwise. Categories (the "five small"): `+strings.Join(domain.DisputeCategories, ", ")+`.`, `
fieldctl device dispute open -category quarrel -title "宅基地邊界爭吵" -parties "周大海; 胡小林" -mediators U-med2`)
	ff := []fieldFlag{
		{"category", "category", "one of " + strings.Join(domain.DisputeCategories, ", ")},
		{"title", "title", "a short title"},
		{"parties", "parties", "the parties to the dispute"},
		{"village", "village_id", "the village `id` (default: yours)"},
		{"mediators", "mediators", "other mediators' user ids, comma-separated"},
	}
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "category", "title"); err != nil {
		return err
	}
	f, _ := fields()
	return c.create("dispute", f)
}

func disputeStatus(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id ID -to STATUS [-level L] [-agreed-on YYYY-MM-DD] [-agreement ...] [-outcome ...]", `
Moves a case to another status. Allowed moves:
  open -> mediating, withdrawn
  mediating -> agreed, failed, withdrawn
  agreed -> closed;  failed -> referred, closed
  referred -> closed;  withdrawn -> closed
A move may carry fields: to agreed -level, -agreed-on, -agreement,
-outcome; to failed or withdrawn -level, -outcome; to referred or closed
-outcome. Levels: `+labelList(pb.Kind_KIND_DISPUTE, "level", domain.DisputeLevels)+`
(agreed defaults to village, referred is referred_out). Closing keeps the
outcome (agreed, failed ...) as the case's result.
If another mediator moved the case meanwhile, the server keeps your move as
a conflict for a person to settle (fieldctl device conflicts).`, `
fieldctl device dispute status -id 0193... -to mediating
fieldctl device dispute status -id 0193... -to agreed -agreed-on 2026-11-25 -agreement "双方同意以旧界桩为准"`)
	id := fs.String("id", "", "the case's `id`")
	to := fs.String("to", "", "the new `status`")
	fields := fieldFlags(fs, []fieldFlag{
		{"level", "level", "where it was settled: " + strings.Join(domain.DisputeLevels, ", ")},
		{"agreed-on", "agreed_on", "the day the parties agreed, YYYY-MM-DD"},
		{"agreement", "agreement", "the agreement reached"},
		{"outcome", "outcome", "the outcome"},
	})
	if err := parseCommand(name, fs, args, "id", "to"); err != nil {
		return err
	}
	f, _ := fields()
	return c.withDevice(func(d *syncer.Device) error {
		if err := d.TransitionWith(*id, *to, f); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s now %s: pending until the next sync\n", *id, domain.ValueLabel(c.lang, pb.Kind_KIND_DISPUTE, "status", *to))
		return nil
	})
}

// disputeAppend adds a note or a session record to a case.
func disputeAppend(field, what string) func(context.Context, *cli, string, []string) error {
	return func(ctx context.Context, c *cli, name string, args []string) error {
		fs := c.newFlags(name, "-id ID TEXT", fmt.Sprintf(`
Adds a %s to a case. Entries are appended, never overwritten. TEXT is the
arguments joined by spaces; "-" reads it from standard input.`, what), fmt.Sprintf(`
fieldctl device dispute %s -id 0193... 雙方同意下週再談
printf "第一次調解：\n雙方到場" | fieldctl device dispute %s -id 0193... -`, what, what))
		id := fs.String("id", "", "the case's `id`")
		args, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if err := required(name, fs, "id"); err != nil {
			return err
		}
		text := strings.Join(args, " ")
		if len(args) == 1 && args[0] == "-" {
			b, err := io.ReadAll(io.LimitReader(c.stdin, 1<<20))
			if err != nil {
				return fmt.Errorf("read standard input: %w", err)
			}
			text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		}
		if strings.TrimSpace(text) == "" {
			return usagef("%s: no text: give the %s as arguments, or - to read it from standard input", short(name), what)
		}
		return c.withDevice(func(d *syncer.Device) error {
			if err := d.Append(*id, field, text); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s: %s added: pending until the next sync\n", *id, what)
			return nil
		})
	}
}

func disputeEdit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id ID [-title ...] [-category ...] [-parties ...] [-agreement ...] [-outcome ...] [-mediators ...] [-level ...] [-occurred ...] [-agreed-on ...]", `
Changes fields of a case you mediate. Only the flags given are changed. An
edit that meets another mediator's concurrent edit of the same field is
kept as a conflict for a person to settle.`, `
fieldctl device dispute edit -id 0193... -agreement "雙方同意以舊界樁為準" -outcome 已調解`)
	id := fs.String("id", "", "the case's `id`")
	ff := []fieldFlag{
		{"title", "title", "a short title"},
		{"category", "category", "one of " + strings.Join(domain.DisputeCategories, ", ")},
		{"parties", "parties", "the parties to the dispute"},
		{"agreement", "agreement", "the agreement reached"},
		{"outcome", "outcome", "the outcome"},
		{"mediators", "mediators", "mediators' user ids, comma-separated"},
		{"level", "level", "where it was settled: " + strings.Join(domain.DisputeLevels, ", ")},
		{"occurred", "occurred_on", "when it happened, YYYY-MM-DD"},
		{"agreed-on", "agreed_on", "the day the parties agreed, YYYY-MM-DD"},
	}
	return c.edit(name, fs, id, ff, args)
}

func eventAdd(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-type T -subject S [-date YYYY-MM-DD] [-detail ...] [-service-mode M] [-village V]", `
Logs an event and prints its id. Types: `+strings.Join(domain.EventTypes, ", ")+`.
A service request says how it was handled with -service-mode (`+strings.Join(domain.ServiceModes, ", ")+`).
Events are never changed once logged; each device chains its own by hash.`, `
fieldctl device event add -type meeting -subject "三會一課：支部黨員大會" -date 2026-11-20
fieldctl device event add -type service_request -subject 代辦醫保續費 -service-mode proxy`)
	ff := []fieldFlag{
		{"type", "type", "one of " + strings.Join(domain.EventTypes, ", ")},
		{"subject", "subject", "what happened, in one line"},
		{"date", "occurred_on", "the day, YYYY-MM-DD (default today)"},
		{"detail", "detail", "details"},
		{"service-mode", "service_mode", "for a service request: " + strings.Join(domain.ServiceModes, ", ")},
		{"village", "village_id", "the village `id` (default: yours)"},
	}
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "type", "subject"); err != nil {
		return err
	}
	f, _ := fields()
	if !given(fs)["date"] {
		f.Set("occurred_on", c.today())
	}
	return c.create("event", f)
}

func deviceList(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[household|visit|dispute|event|need|project] [--json]", `
Lists the records on this device, of one kind or all, by id: id, kind,
state (synced 已同步, pending 待同步, rejected 被拒绝, conflict 有冲突; a
voided record is marked 已作废 / voided), a summary (with the status of a
dispute, need or project) and the reason of a rejection, conflict or void.
Kinds, statuses and categories read in Chinese; -lang en (or
FIELDCTL_LANG=en) prints the English words. --json prints machine names
(english keys and values), with "voided", "void", "history" and "labels"
(the -lang labels of the kind and of each enum value).`, `
fieldctl device list
fieldctl device list need
fieldctl device -lang en list visit --json`)
	asJSON := fs.Bool("json", false, "print a JSON array of records with all their fields")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		return usagef("%s: want at most one kind (see %s -h)", short(name), name)
	}
	kind := ""
	if len(args) == 1 {
		if _, ok := domain.ParseKind(args[0]); !ok {
			return usagef("%s: unknown kind %q: want one of %s", short(name), args[0], strings.Join(domain.KindNames(), ", "))
		}
		kind = args[0]
	}
	return c.withDevice(func(d *syncer.Device) error {
		items, err := d.List(kind)
		if err != nil {
			return err
		}
		if *asJSON {
			out := make([]*deviceItemJSON, 0, len(items))
			for _, it := range items {
				out = append(out, c.deviceItemJSON(it))
			}
			return writeJSON(c.stdout, out)
		}
		return c.writeList(c.stdout, items)
	})
}

// itemJSON is a device's record with its state.
func itemJSON(it *syncer.Item) *recordJSON {
	r := toRecordJSON(it.Record)
	r.ID, r.Kind, r.State, r.Reason, r.Version = it.ID, it.Kind, it.State, it.Reason, it.Version
	return r
}

func deviceShow(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "ID [--json]", `
Shows one record as the device sees it: its state (and why, if rejected,
in conflict or voided), every field (in Chinese with each field's label
beside its name; -lang en the names alone), the status history with the
server's times, the entries (notes, sessions, progress), and any conflicts
with how to settle them.`, `
fieldctl device show 0193...
fieldctl device show H0001 --json`)
	asJSON := fs.Bool("json", false, "print the record as JSON")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("%s: want one argument, the record's id (see fieldctl device list)", short(name))
	}
	return c.withDevice(func(d *syncer.Device) error {
		it, err := d.Get(args[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(c.stdout, c.deviceItemJSON(it))
		}
		return c.writeRecordIn(c.stdout, it)
	})
}

// statusJSON is fieldctl device status --json.
type statusJSON struct {
	DeviceID      string `json:"device_id"`
	UserID        string `json:"user_id"`
	UserName      string `json:"user_name"`
	Role          string `json:"role"`
	VillageID     string `json:"village_id"`
	Server        string `json:"server"`
	Pending       int    `json:"pending"`
	Rejected      int    `json:"rejected"`
	Records       int    `json:"records"`
	Conflicts     int    `json:"conflicts"`
	Buckets       int    `json:"buckets"`
	LastSyncMs    int64  `json:"last_sync_ms"`
	LastSync      string `json:"last_sync"`
	LastError     string `json:"last_error"`
	ClockOffsetMs int64  `json:"clock_offset_ms"`
	// Notice: the phone's data or the server was restored, and what was
	// sent again. Stopped: "cloned" if this copy syncs no more.
	Notice  string `json:"notice"`
	Stopped string `json:"stopped"`
	Acked   int    `json:"acked_kept"`
}

func deviceStatus(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--json]", `
Shows who this device is (device, user, role, server), how many changes
wait to be sent or were refused, how many records it holds and how many
are in conflict, when it last synced, the last sync error, and its clock's
offset from the server's; a notice if this phone's data or the server was
restored from an older copy (and what was sent again), and whether this
copy was stopped because another copy syncs with the same credential.`, `
fieldctl device -db phone.db status`)
	asJSON := fs.Bool("json", false, "print a JSON object")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	return c.withDevice(func(d *syncer.Device) error {
		st, err := d.Status()
		if err != nil {
			return err
		}
		out := statusJSON{DeviceID: st.DeviceID, UserID: st.UserID, UserName: st.UserName, Role: st.Role, VillageID: st.VillageID,
			Server: st.Server, Pending: st.Pending, Rejected: st.Rejected, Records: st.Records, Conflicts: st.Conflicts,
			Buckets: st.Buckets, LastSyncMs: st.LastSyncMs, LastSync: rfc3339(st.LastSyncMs), LastError: st.LastError,
			ClockOffsetMs: st.ClockOffsetMs, Notice: st.Notice, Stopped: st.Stopped, Acked: st.Acked}
		if *asJSON {
			return writeJSON(c.stdout, out)
		}
		t := newTable()
		t.add("device", out.DeviceID)
		t.add("user", strings.TrimSpace(out.UserID+" "+out.UserName))
		t.add("role", out.Role)
		t.add("village", out.VillageID)
		t.add("server", out.Server)
		t.add("pending", fmt.Sprint(out.Pending))
		t.add("rejected", fmt.Sprint(out.Rejected))
		t.add("records", fmt.Sprint(out.Records))
		t.add("conflicts", fmt.Sprint(out.Conflicts))
		t.add("last sync", fmtTime(out.LastSyncMs))
		t.add("last error", out.LastError)
		if out.Stopped != "" {
			t.add("stopped", out.Stopped+": another copy of this phone's database syncs with the same credential; enroll again with a new code to send this copy's work")
		}
		if out.Notice != "" {
			t.add("notice", out.Notice)
		}
		t.add("clock offset", (time.Duration(out.ClockOffsetMs) * time.Millisecond).String())
		return t.write(c.stdout)
	})
}

// rejectionJSON is one refused mutation.
type rejectionJSON struct {
	Seq      uint64 `json:"seq"`
	RecordID string `json:"record_id"`
	Kind     string `json:"kind"`
	Op       string `json:"op"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Reason   string `json:"reason"`
}

func deviceRejections(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--json]", `
Lists the changes the server refused for good, oldest first: the mutation
number, record, kind, operation, a stable code (invalid_field, not_found,
permission_denied, invalid_transition, already_exists), the field at fault
and the reason. They stay on the device, shown on their records.`, `
fieldctl device rejections --json`)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	return c.withDevice(func(d *syncer.Device) error {
		rs, err := d.Rejections()
		if err != nil {
			return err
		}
		out := make([]rejectionJSON, 0, len(rs))
		for _, r := range rs {
			out = append(out, rejectionJSON{Seq: r.Seq, RecordID: r.RecordID, Kind: r.Kind, Op: r.Op, Code: r.Code, Field: r.Field, Reason: r.Reason})
		}
		if *asJSON {
			return writeJSON(c.stdout, out)
		}
		t := newTable("SEQ", "RECORD", "KIND", "OP", "CODE", "FIELD", "REASON")
		for _, r := range out {
			t.add(fmt.Sprint(r.Seq), r.RecordID, r.Kind, r.Op, r.Code, r.Field, r.Reason)
		}
		return t.write(c.stdout)
	})
}

func deviceSync(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "", `
Syncs once: sends every pending change and receives every change in the
user's scope, page by page. If syncd cannot be reached the work stays on
the device, to be sent at the next sync.
Changes the server refused for good in this sync are listed on standard
error with their reasons (all of them: fieldctl device rejections).
Exit status: 0 synced; 3 synced, but the server refused some changes;
1 the sync failed (the work stays on the device); 2 a command line mistake.`, `
fieldctl device -db phone.db sync`)
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	return c.withDevice(func(d *syncer.Device) error {
		before, err := d.Rejections()
		if err != nil {
			return err
		}
		rep, err := d.Sync(ctx)
		if err != nil {
			return syncError(err)
		}
		fmt.Fprintf(c.stdout, "synced: sent %d (applied %d, conflicts %d, rejected %d), received %d, removed %d, %s\n",
			rep.Pushed, rep.Applied, rep.Conflicts, rep.Rejected, rep.Pulled, rep.Purged, plural(rep.Calls, "round trip", "round trips"))
		if rep.Conflicts > 0 {
			fmt.Fprintf(c.stderr, "fieldctl: %s met concurrent edits, kept as conflicts: see fieldctl device -db %s list\n", plural(rep.Conflicts, "change", "changes"), c.db)
		}
		if rep.Rejected == 0 {
			return nil
		}
		return c.newRejections(d, before, rep.Rejected)
	})
}

// newRejections lists on stderr the rejections that are not in before,
// and returns the exit status of a sync with rejected work.
func (c *cli) newRejections(d *syncer.Device, before []*syncer.Rejection, n int) error {
	old := map[uint64]bool{}
	for _, r := range before {
		old[r.Seq] = true
	}
	after, err := d.Rejections()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "fieldctl: the server refused %s; kept on the device, shown on their records:\n", plural(n, "change", "changes"))
	t := newTable("SEQ", "RECORD", "KIND", "OP", "CODE", "FIELD", "REASON")
	for _, r := range after {
		if !old[r.Seq] {
			t.add(fmt.Sprint(r.Seq), r.RecordID, r.Kind, r.Op, r.Code, r.Field, r.Reason)
		}
	}
	if err := t.write(c.stderr); err != nil {
		return err
	}
	return &statusError{code: exitRejected, msg: fmt.Sprintf("synced, but the server refused %s (exit status %d): fix them or tell the administrator; all refusals: fieldctl device -db %s rejections",
		plural(n, "change", "changes"), exitRejected, c.db)}
}

// syncError makes sure a failed sync says that nothing was lost.
func syncError(err error) error {
	if errors.Is(err, syncer.ErrRevoked) || errors.Is(err, syncer.ErrNotEnrolled) || strings.Contains(err.Error(), "kept on the device") {
		return err
	}
	return fmt.Errorf("sync: %w; the work is kept on the device and syncs later", err)
}

func deviceRun(ctx context.Context, c *cli, name string, args []string) error {
	interval := 5 * time.Minute
	fs := c.newFlags(name, "[-interval 5m]", `
Syncs in the background until interrupted (Ctrl-C): at once, when the server
says the user's records changed, and every -interval; after a failure it
retries with growing pauses up to 5 minutes. Writes made by other fieldctl
commands meanwhile are sent at the next interval. Prints a line after each
sync, and when a sync fails.`, `
fieldctl device -db phone.db run -interval 1m`)
	fs.Var(durationFlag{&interval}, "interval", "how often to sync when nothing happens, e.g. 30s, 5m")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if interval < time.Second {
		return usagef("%s: -interval %v: want at least 1s", short(name), interval)
	}
	return c.withDevice(func(d *syncer.Device) error {
		id, err := d.Identity()
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "fieldctl: syncing %s with %s every %v; Ctrl-C stops\n", c.db, id.Server, interval)
		base, err := d.Status() // what the last sync left, not to be reported again
		if err != nil {
			return err
		}
		done := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			c.watchSyncs(d, base, done)
		}()
		err = d.Run(ctx, interval)
		close(done)
		<-watched
		if err != nil {
			return syncError(err)
		}
		fmt.Fprintln(c.stderr, "fieldctl: stopped")
		return nil
	})
}

// watchSyncs prints a line whenever the device's last sync or last error
// changes from base, until done is closed.
func (c *cli) watchSyncs(d *syncer.Device, base *syncer.Status, done <-chan struct{}) {
	lastMs, lastErr := base.LastSyncMs, base.LastError
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		st, err := d.Status()
		if err != nil {
			continue
		}
		switch {
		case st.LastError != "" && st.LastError != lastErr:
			fmt.Fprintf(c.stdout, "%s sync failed: %s (retrying)\n", c.now().Format("15:04:05"), escapeLines(st.LastError))
		case st.LastError == "" && st.LastSyncMs != lastMs:
			fmt.Fprintf(c.stdout, "%s synced: %d pending, %d rejected, %d records, %d conflicts\n",
				time.UnixMilli(st.LastSyncMs).Format("15:04:05"), st.Pending, st.Rejected, st.Records, st.Conflicts)
		}
		lastMs, lastErr = st.LastSyncMs, st.LastError
	}
}

// edit parses an edit command's flags and sends the fields given as one
// update of the record -id names.
func (c *cli) edit(name string, fs *flag.FlagSet, id *string, ff []fieldFlag, args []string) error {
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "id"); err != nil {
		return err
	}
	f, n := fields()
	if n == 0 {
		return usagef("%s: nothing to change: give one or more of %s", short(name), flagNames(ff))
	}
	return c.update(*id, f)
}
