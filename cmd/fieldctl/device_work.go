package main

// The device's commands for the whole job in the field: needs, practical
// projects, member reports of disputes, corrections (void), the conflict
// inbox and settling, and the village secretary's assignments.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

func needCommand() *command {
	return &command{name: "need", summary: "raise a household's need and follow it to resolution",
		about: `Needs (群众诉求): a difficulty heard on a visit or brought to the branch,
raised by a member or a secretary, taken up (who, what help), resolved, or
referred to the town with a reason. Statuses:
  raised -> taken, referred, resolved
  taken -> referred, resolved
  referred -> taken, resolved
  resolved is final.`,
		sub: []*command{
			{name: "raise", summary: "raise a need (prints its id)", run: needRaise},
			{name: "take", summary: "take a need up (secretary), with the help planned", run: needMove("taken")},
			{name: "refer", summary: "refer a need to the town, with the reason", run: needMove("referred")},
			{name: "resolve", summary: "resolve a need, with how", run: needMove("resolved")},
			{name: "note", summary: "add a note to a need", run: listAppend("need", "notes", "note")},
			{name: "edit", summary: "change a need's summary, detail ...", run: needEdit},
		}}
}

func projectCommand() *command {
	return &command{name: "project", summary: "practical projects (为民办实事) led to completion",
		about: `Practical projects (为民办实事, 领办实事): a title, a leader (a member leads
their own; the village secretary names others), beneficiary households, a
planned completion date, progress entries and an outcome. Statuses:
  planned -> in_progress, completed, abandoned
  in_progress -> completed, abandoned
  completed and abandoned are final; completing requires an outcome.`,
		sub: []*command{
			{name: "add", summary: "start a project (prints its id)", run: projectAdd},
			{name: "start", summary: "mark a project under way", run: projectMove("in_progress")},
			{name: "progress", summary: "add a progress entry", run: listAppend("project", "progress", "progress entry")},
			{name: "complete", summary: "complete a project, with its outcome", run: projectMove("completed")},
			{name: "abandon", summary: "abandon a project, with why", run: projectMove("abandoned")},
			{name: "edit", summary: "change a project's title, households, planned date ...", run: projectEdit},
		}}
}

// recordID takes a command's record id: the first argument, or -id (the
// older commands' style). It returns the other arguments.
func recordID(name string, fs *flag.FlagSet, id *string, args []string) ([]string, error) {
	if *id == "" {
		if len(args) == 0 || args[0] == "" {
			return nil, usagef("%s: want the record's id as the first argument (see fieldctl device list)", short(name))
		}
		*id, args = args[0], args[1:]
	}
	return args, nil
}

func needRaise(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-category C -summary S [-household H] [-visit V] [-detail ...] [-village V]", `
Raises a need and prints its id. A member raises it for one of their linked
households, best from the visit it was heard on (-visit); a secretary for
any household of the village, or with no household at all. Works offline:
a household this device knows is not linked to you is refused at once.
Categories: `+labelList(pb.Kind_KIND_NEED, "category", domain.NeedCategories)+`.`, `
fieldctl device need raise -household H001 -visit 0193... -category housing -summary 屋顶漏雨 -detail "西边两间房漏雨，需要修缮"`)
	ff := []fieldFlag{
		{"category", "category", "one of " + strings.Join(domain.NeedCategories, ", ")},
		{"summary", "summary", "the need in one line"},
		{"detail", "detail", "details"},
		{"household", "household_id", "the household's `id`"},
		{"visit", "visit_id", "the `id` of the visit it was raised on"},
		{"village", "village_id", "the village `id` (default: yours)"},
	}
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "category", "summary"); err != nil {
		return err
	}
	f, _ := fields()
	return c.create("need", f)
}

// needMove moves a need to status to, with the fields that move may carry.
func needMove(to string) func(context.Context, *cli, string, []string) error {
	type move struct {
		synopsis, about, example string
		ff                       []fieldFlag
		need                     []string
	}
	moves := map[string]move{
		"taken": {"ID [-help TEXT]", `
Takes a need up (a secretary): you become its taker (taken_by), with the
help planned. From raised or referred.`, `fieldctl device need take 0193... -help "联系镇民政办申请临时救助"`,
			[]fieldFlag{{"help", "help", "the help planned or given"}}, nil},
		"referred": {"ID -reason TEXT", `
Refers a need to the town, with the reason (required). From raised or
taken.`, `fieldctl device need refer 0193... -reason "危房改造需镇里审批"`,
			[]fieldFlag{{"reason", "referral_reason", "why it goes to the town (required)"}}, []string{"reason"}},
		"resolved": {"ID [-resolution TEXT] [-help TEXT]", `
Resolves a need: how it was met (-resolution) and the help given. A
resolved need is final; the member who raised it sees it resolved at their
next sync.`, `fieldctl device need resolve 0193... -resolution "已修缮完毕，户主满意"`,
			[]fieldFlag{{"resolution", "resolution", "how the need was met"}, {"help", "help", "the help given"}}, nil},
	}
	m := moves[to]
	return func(ctx context.Context, c *cli, name string, args []string) error {
		fs := c.newFlags(name, m.synopsis, m.about, m.example)
		return c.transition(name, fs, "need", to, m.ff, m.need, args)
	}
}

func projectMove(to string) func(context.Context, *cli, string, []string) error {
	type move struct {
		synopsis, about, example string
		ff                       []fieldFlag
		need                     []string
	}
	moves := map[string]move{
		"in_progress": {"ID", `Marks a planned project under way.`, `fieldctl device project start 0193...`, nil, nil},
		"completed": {"ID -outcome TEXT", `
Completes a project with its outcome (required). Final.`, `fieldctl device project complete 0193... -outcome "硬化道路800米，通车"`,
			[]fieldFlag{{"outcome", "outcome", "what was achieved (required)"}}, []string{"outcome"}},
		"abandoned": {"ID [-outcome TEXT]", `
Abandons a project, saying why. Final.`, `fieldctl device project abandon 0193... -outcome "资金未落实"`,
			[]fieldFlag{{"outcome", "outcome", "why it was abandoned"}}, nil},
	}
	m := moves[to]
	return func(ctx context.Context, c *cli, name string, args []string) error {
		fs := c.newFlags(name, m.synopsis, m.about, m.example)
		return c.transition(name, fs, "project", to, m.ff, m.need, args)
	}
}

// transition parses a status move's flags (the record's id first, then
// the fields the move carries) and makes it.
func (c *cli) transition(name string, fs *flag.FlagSet, kind, to string, ff []fieldFlag, need []string, args []string) error {
	id := fs.String("id", "", "the "+kind+"'s `id` (or give it as the first argument)")
	fields := fieldFlags(fs, ff)
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if args, err = recordID(name, fs, id, args); err != nil {
		return err
	}
	if err := noArgs(name, args); err != nil {
		return err
	}
	if err := required(name, fs, need...); err != nil {
		return err
	}
	f, _ := fields()
	k, _ := domain.ParseKind(kind)
	return c.withDevice(func(d *syncer.Device) error {
		if err := checkKind(d, *id, k); err != nil {
			return err
		}
		if err := d.TransitionWith(*id, to, f); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s now %s: pending until the next sync\n", *id, domain.ValueLabel(c.lang, k, "status", to))
		return nil
	})
}

// checkKind refuses a kind's command on a record of another kind, saying
// which it is.
func checkKind(d *syncer.Device, id string, k pb.Kind) error {
	it, err := d.Get(id)
	if err != nil {
		return err
	}
	if it.Record.GetKind() != k {
		return fmt.Errorf("%s is a %s, not a %s", id, it.Kind, domain.KindName(k))
	}
	return nil
}

// listAppend adds an entry to a list field of a record: a need's notes, a
// project's progress.
func listAppend(kind, field, what string) func(context.Context, *cli, string, []string) error {
	return func(ctx context.Context, c *cli, name string, args []string) error {
		fs := c.newFlags(name, "ID TEXT", fmt.Sprintf(`
Adds a %s to a %s. Entries are appended, never overwritten. TEXT is the
arguments after the id joined by spaces; "-" reads it from standard input.`, what, kind), fmt.Sprintf(`
fieldctl device %s %s 0193... 已完成路基平整`, kind, strings.Fields(name)[len(strings.Fields(name))-1]))
		id := fs.String("id", "", "the "+kind+"'s `id` (or give it as the first argument)")
		args, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if args, err = recordID(name, fs, id, args); err != nil {
			return err
		}
		text, err := c.textArgs(name, what, args)
		if err != nil {
			return err
		}
		k, _ := domain.ParseKind(kind)
		return c.withDevice(func(d *syncer.Device) error {
			if err := checkKind(d, *id, k); err != nil {
				return err
			}
			if err := d.Append(*id, field, text); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s: %s added: pending until the next sync\n", *id, what)
			return nil
		})
	}
}

// textArgs is the text of an entry: the arguments joined by spaces, or
// standard input for "-".
func (c *cli) textArgs(name, what string, args []string) (string, error) {
	text := strings.Join(args, " ")
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("read standard input: %w", err)
		}
		text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if strings.TrimSpace(text) == "" {
		return "", usagef("%s: no text: give the %s as arguments, or - to read it from standard input", short(name), what)
	}
	return text, nil
}

func needEdit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id ID [-summary ...] [-detail ...] [-category ...] [-help ...] [-resolution ...]", `
Changes fields of a need. A member changes summary and detail of their own
need; a secretary also category, help and resolution. Only the flags given
are changed. The status changes with take, refer and resolve.`, `
fieldctl device need edit -id 0193... -detail "漏雨严重，老人住在东屋"`)
	id := fs.String("id", "", "the need's `id`")
	ff := []fieldFlag{
		{"summary", "summary", "the need in one line"},
		{"detail", "detail", "details"},
		{"category", "category", "one of " + strings.Join(domain.NeedCategories, ", ")},
		{"help", "help", "the help planned or given"},
		{"resolution", "resolution", "how the need was met"},
	}
	return c.edit(name, fs, id, ff, args)
}

var projectFields = []fieldFlag{
	{"title", "title", "the project in one line"},
	{"detail", "detail", "details"},
	{"households", "households", "beneficiary households' ids, comma-separated"},
	{"planned", "planned_on", "planned completion, YYYY-MM-DD"},
}

func projectAdd(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-title T [-leader U] [-households H1,H2] [-planned YYYY-MM-DD] [-detail ...] [-village V]", `
Starts a practical project and prints its id; it starts planned. A member
leads their own projects (-leader is them, or left out); the village
secretary names a member or the branch as leader, or leaves it out.`, `
fieldctl device project add -title 硬化张家塆通组路 -households H001,H002 -planned 2026-12-31`)
	ff := append([]fieldFlag{{"leader", "leader_id", "the leading member's user `id` (a member: yourself)"},
		{"village", "village_id", "the village `id` (default: yours)"}}, projectFields...)
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "title"); err != nil {
		return err
	}
	f, _ := fields()
	return c.create("project", f)
}

func projectEdit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-id ID [-title ...] [-detail ...] [-households ...] [-planned ...] [-outcome ...]", `
Changes fields of a project you lead (a member) or of the village (a
secretary). Only the flags given are changed.`, `
fieldctl device project edit -id 0193... -planned 2027-01-15`)
	id := fs.String("id", "", "the project's `id`")
	ff := append(append([]fieldFlag{}, projectFields...), fieldFlag{"outcome", "outcome", "what was achieved"})
	return c.edit(name, fs, id, ff, args)
}

func disputeReport(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-category C -title T [-parties ...] [-household H] [-visit V] [-occurred YYYY-MM-DD]", `
Reports a quarrel, a hazard or another of the "five small" seen on a visit
(a member) and prints its id. It arrives in the village mediators' queue as
a new case; you follow it on your phone (reported_by). Categories:
`+labelList(pb.Kind_KIND_DISPUTE, "category", domain.DisputeCategories)+`.`, `
fieldctl device dispute report -category hazard -title 村口危墙可能倒塌 -household H001 -visit 0193... -occurred 2026-11-20`)
	ff := []fieldFlag{
		{"category", "category", "one of " + strings.Join(domain.DisputeCategories, ", ")},
		{"title", "title", "what was seen, in one line"},
		{"parties", "parties", "the people involved"},
		{"household", "household_id", "the household's `id`"},
		{"visit", "visit_id", "the `id` of the visit it was seen on"},
		{"occurred", "occurred_on", "when it happened, YYYY-MM-DD"},
		{"village", "village_id", "the village `id` (default: yours)"},
	}
	fields := fieldFlags(fs, ff)
	if err := parseCommand(name, fs, args, "category", "title"); err != nil {
		return err
	}
	f, _ := fields()
	return c.create("dispute", f)
}

func deviceVoid(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "ID -reason TEXT", `
Voids a visit, event, need or project entered by mistake or twice, with
the reason. Its author or the village secretary may void it; the first void
wins. A voided record stays (marked 已作废 / voided in every listing, and in
history and the changelog), takes no more changes and counts nowhere.
Households leave through the administrator's import (retired); a dispute is
withdrawn instead.`, `
fieldctl device void 0193... -reason "重复录入"`)
	id := fs.String("id", "", "the record's `id` (or give it as the first argument)")
	reason := fs.String("reason", "", "why the record is void (required)")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if args, err = recordID(name, fs, id, args); err != nil {
		return err
	}
	if err := noArgs(name, args); err != nil {
		return err
	}
	if err := required(name, fs, "reason"); err != nil {
		return err
	}
	return c.withDevice(func(d *syncer.Device) error {
		if err := d.Void(*id, *reason); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s: pending until the next sync\n", *id, c.label("void"))
		return nil
	})
}

// conflictJSONItem is one field in conflict, in fieldctl device conflicts
// --json: machine names, with labels for a person to read.
type conflictJSONItem struct {
	RecordID   string              `json:"record_id"`
	Kind       string              `json:"kind"`
	Field      string              `json:"field"`
	Voided     bool                `json:"voided"`
	Pending    bool                `json:"pending"`
	Standing   conflictValueJSON   `json:"standing"`
	Losing     []conflictValueJSON `json:"losing"`
	KindLabel  string              `json:"kind_label"`
	FieldLabel string              `json:"field_label"`
}

type conflictValueJSON struct {
	Value      string `json:"value"`
	ValueLabel string `json:"value_label,omitempty"`
	AuthorID   string `json:"author_id"`
	HLC        string `json:"hlc"`
	Reason     string `json:"reason,omitempty"`
}

func deviceConflicts(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--json]", `
The conflict inbox: every field of a record on this device that concurrent
writes left in conflict. For each, the value that stands (and who wrote it)
and each value that lost (who, when, why). Settle one with
  fieldctl device settle ID FIELD --mine | --theirs | --value V
A status conflict (two moves made from the same status) settles the same
way: --theirs keeps the current status, --mine makes your move if it is
still allowed from there.`, `
fieldctl device conflicts
fieldctl device conflicts --json`)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	return c.withDevice(func(d *syncer.Device) error {
		items, err := d.Conflicts()
		if err != nil {
			return err
		}
		if *asJSON {
			out := make([]conflictJSONItem, 0, len(items))
			for _, it := range items {
				k, _ := domain.ParseKind(it.Kind)
				val := func(v syncer.ConflictValue) conflictValueJSON {
					j := conflictValueJSON{Value: v.Value, AuthorID: v.AuthorID, HLC: v.HLC, Reason: v.Reason}
					if l := domain.ValueLabel(c.lang, k, it.Field, v.Value); l != v.Value {
						j.ValueLabel = l
					}
					return j
				}
				j := conflictJSONItem{RecordID: it.RecordID, Kind: it.Kind, Field: it.Field, Voided: it.Voided, Pending: it.Pending,
					Standing: val(it.Standing), Losing: []conflictValueJSON{},
					KindLabel: domain.KindLabel(c.lang, k), FieldLabel: domain.FieldLabel(c.lang, k, it.Field)}
				for _, v := range it.Losing {
					j.Losing = append(j.Losing, val(v))
				}
				out = append(out, j)
			}
			return writeJSON(c.stdout, out)
		}
		t := newTable(c.ui("RECORD", "记录"), c.ui("KIND", "类型"), c.ui("FIELD", "字段"), c.ui("WHICH", "取舍"), c.ui("VALUE", "值"),
			c.ui("AUTHOR", "填写人"), c.ui("WHEN", "时间"), c.ui("WHY", "原因"))
		for _, it := range items {
			k, _ := domain.ParseKind(it.Kind)
			field := it.Field + " " + domain.FieldLabel(c.lang, k, it.Field)
			if c.lang == domain.LangEN {
				field = it.Field
			}
			kind := domain.KindLabel(c.lang, k)
			if it.Voided {
				kind += " " + c.label("void")
			}
			t.add(it.RecordID, kind, field, c.ui("stands", "现值"), c.value(k, it.Field, it.Standing.Value), it.Standing.AuthorID, hlcTime(it.Standing.HLC), "")
			for _, v := range it.Losing {
				t.add(it.RecordID, kind, field, c.ui("lost", "落选"), c.value(k, it.Field, v.Value), v.AuthorID, hlcTime(v.HLC), v.Reason)
			}
		}
		if err := t.write(c.stdout); err != nil {
			return err
		}
		if len(items) > 0 {
			fmt.Fprintf(c.stderr, "settle: fieldctl device -db %s settle ID FIELD --mine | --theirs | --value V\n", c.db)
		}
		return nil
	})
}

func deviceSettle(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "ID FIELD (--mine | --theirs | --value V)", `
Settles the conflicts of one field of a record (see fieldctl device
conflicts), for every device: --mine keeps the value you wrote (an error if
none is yours), --theirs keeps the value that stands (for a status, the
current status), --value enters a new value (for a status: the current one
or a move allowed from it). This device clears the conflict at once; the
others at their next sync. A settle may be refused offline, saying why: you
may settle only a field you may change.`, `
fieldctl device settle 0193... summary --theirs
fieldctl device settle 0193... status --mine
fieldctl device settle H001 phone --value 13800000009`)
	mine := fs.Bool("mine", false, "keep the value you wrote")
	theirs := fs.Bool("theirs", false, "keep the value that stands")
	value := fs.String("value", "", "enter this value `V` instead")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 2 {
		return usagef("%s: want two arguments, the record's id and the field (see fieldctl device conflicts)", short(name))
	}
	n := 0
	for _, b := range []bool{*mine, *theirs, given(fs)["value"]} {
		if b {
			n++
		}
	}
	if n != 1 {
		return usagef("%s: give exactly one of --mine, --theirs, --value V", short(name))
	}
	id, field := args[0], args[1]
	return c.withDevice(func(d *syncer.Device) error {
		var err error
		switch {
		case *mine:
			err = d.KeepMine(id, field)
		case *theirs:
			err = d.TakeTheirs(id, field)
		default:
			err = d.Settle(id, field, *value)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s settled: pending until the next sync\n", id, field)
		return nil
	})
}

func deviceAssign(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "HOUSEHOLD MEMBER", `
Links a household of your village to a member of your village (the village
secretary): the member visits it from then on. Works offline; the server
checks it, relinks and audits it with your name, and the members' phones
follow at their next sync (the old member's phone drops the household).`, `
fieldctl device assign H001 U-member2`)
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 2 {
		return usagef("%s: want two arguments, the household's id and the member's user id", short(name))
	}
	return c.withDevice(func(d *syncer.Device) error {
		if err := d.Assign(args[0], args[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s linked to %s: pending until the next sync\n", args[0], args[1])
		return nil
	})
}

func deviceUnassign(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "HOUSEHOLD", `
Unlinks a household of your village from its member (the village
secretary); link it to another with fieldctl device assign.`, `
fieldctl device unassign H001`)
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usagef("%s: want one argument, the household's id", short(name))
	}
	return c.withDevice(func(d *syncer.Device) error {
		if err := d.Assign(args[0], ""); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s unlinked: pending until the next sync\n", args[0])
		return nil
	})
}

// labelList is "livelihood 生活困难, medical 看病就医, ...": the values of
// an enum field with their Chinese labels, for help text.
func labelList(k pb.Kind, field string, values []string) string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = v + " " + domain.ValueLabel(domain.LangZH, k, field, v)
	}
	return strings.Join(out, ", ")
}

// label is a label of domain.Label (void, conflict ...) in the chosen
// language.
func (c *cli) label(key string) string { return domain.Label(c.lang, key) }

// ui picks the English or Chinese words of fieldctl's own output.
func (c *cli) ui(en, zh string) string {
	if c.lang == domain.LangEN {
		return en
	}
	return zh
}

// value is an enum field's value as a person reads it; other values as
// they are.
func (c *cli) value(k pb.Kind, field, v string) string {
	if v == "" {
		return v
	}
	return domain.ValueLabel(c.lang, k, field, v)
}
