package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func hqCommand() *command {
	return &command{
		name:    "hq",
		summary: "export every record, tail the changelog, run the HQ page",
		about: `fieldctl hq reads everything: export streams records from syncd with the
admin credential; tail follows the changelog on NATS JetStream. The HQ
page (served by syncd, or by web on its own) shows the month's coverage,
disputes, needs, events and devices: signin-code issues a person's code
to sign in with, audit lists who signed in and downloaded what.`,
		flags: serverFlags,
		sub: []*command{
			{name: "export", summary: "stream every record changed after a version, as NDJSON or CSV", run: hqExport},
			{name: "tail", summary: "follow the changelog stream, one line per change", run: hqTail},
			{name: "web", summary: "run the HQ page and its read model on their own, against any NATS", run: hqWeb},
			{name: "stream", summary: "create or update " + domain.HQStreamName + ", the stream sourcing every region's changelog", run: hqStream},
			{name: "signin-code", summary: "issue a one-time sign-in code for the HQ page to a person", run: hqSigninCode},
			{name: "audit", summary: "list the HQ page's audit: sign-ins, codes, downloads", run: hqAudit},
		},
	}
}

func hqExport(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-format ndjson|csv] [-after N] [-kind K[,K]] [-o FILE]", `
Streams every record whose version (change number) is after -after, as it is
now, in version order. NDJSON writes one object a line:
  {"id","kind","version","author_id","origin_device_id","fields":{name:value},
   "entries":[...],"conflicts":[...],"buckets":[...],"voided":false,
   "void":{"reason","hlc","author_id","at_ms"},
   "history":[{"from","to","hlc","author_id","at_ms"}...]}
CSV writes one row a record: id,kind,version,author_id, then
voided,void_reason,void_by,voided_at (voided: 1 or 0), opened_at,closed_at
(when a dispute, need or project got its first status and when it reached a
final one: closed, resolved, completed or abandoned; RFC 3339, UTC, the
server's clock), then every field name (sorted); entries (notes, sessions,
progress), conflicts and the whole history are only in NDJSON.
Voided records are always exported, marked, so that an export after a
version voids HQ's copy too: count only the records with voided 0 (false);
the summary on stderr says how many were voided. The CSV starts with a UTF-8 byte order mark (for Excel), and a cell
that would run as a spreadsheet formula (=, +, -, @, tab...) starts with '.
Apply records by id, keeping the highest version. The last version
is printed on stderr: pass it as -after to fetch only what changed since.`, `
fieldctl hq export -o all.ndjson
fieldctl hq export -format csv -kind visit -o visits.csv
fieldctl hq export -after 120345 -kind dispute,event`)
	format := fs.String("format", "ndjson", "output `format`: ndjson or csv")
	after := fs.Uint64("after", 0, "export records with a version after this change `number` (0: all)")
	kindList := fs.String("kind", "", "only these `kinds`, comma-separated: "+strings.Join(domain.KindNames(), ", "))
	outPath := fs.String("o", "", "write to this `file` instead of standard output")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *format != "ndjson" && *format != "csv" {
		return usagef("%s: -format %q: want ndjson or csv", short(name), *format)
	}
	var kinds []pb.Kind
	for _, k := range domain.SplitList(*kindList) {
		kind, ok := domain.ParseKind(k)
		if !ok {
			return usagef("%s: -kind %q: want one or more of %s", short(name), k, strings.Join(domain.KindNames(), ", "))
		}
		kinds = append(kinds, kind)
	}

	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := pb.NewExportServiceClient(conn).Export(actx, &pb.ExportRequest{AfterVersion: *after, Kinds: kinds})
	if err != nil {
		return c.rpcError("export", err)
	}

	var out io.Writer = c.stdout
	var file *os.File
	if *outPath != "" {
		if file, err = os.Create(*outPath); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer file.Close()
		out = file
	}
	bw := bufio.NewWriterSize(out, 1<<16)
	enc := newNDJSON(bw)
	var (
		n      int
		voided int
		last   = *after
		recs   []*pb.Record // CSV only: its columns are known at the end
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if n == 0 {
				if file != nil { // leave no empty file that looks like an export
					file.Close()
					os.Remove(*outPath)
				}
				return c.rpcError("export", err)
			}
			if *format == "csv" {
				writeCSV(bw, recs) // what arrived is still worth keeping
			}
			bw.Flush()
			return c.rpcError(fmt.Sprintf("export (%d records written, up to version %d: resume with -after %d)", n, last, last), err)
		}
		for _, r := range resp.GetRecords() {
			if *format == "csv" {
				recs = append(recs, r)
			} else if err := enc.Encode(toHQRecordJSON(r)); err != nil {
				return fmt.Errorf("export: write: %w", err)
			}
			n++
			if r.GetVoid() != nil {
				voided++
			}
			if n%progressEvery == 0 {
				fmt.Fprintf(c.stderr, "fieldctl: %d records exported\n", n)
			}
		}
		last = max(last, resp.GetLastVersion())
	}
	if *format == "csv" {
		if err := writeCSV(bw, recs); err != nil {
			return fmt.Errorf("export: write: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	fmt.Fprintf(c.stderr, "fieldctl: exported %s up to version %d (next time: -after %d)\n", plural(n, "record", "records"), last, last)
	if voided > 0 {
		fmt.Fprintf(c.stderr, "fieldctl: %d of them voided (marked voided): count them nowhere\n", voided)
	}
	return nil
}

// utf8BOM starts the CSV: Excel reads a CSV without it in the system's
// code page (GBK on Chinese Windows) and shows the Chinese as garbage.
const utf8BOM = "\ufeff"

// writeCSV writes one row a record: id, kind, version, author, the void
// and status dates (csvStatusColumns) and every field name that any record
// has, sorted. The file starts with a UTF-8
// byte order mark, and every cell passes through domain.InertCSVCell so
// that no text a device wrote runs as a formula in HQ's spreadsheet.
func writeCSV(w io.Writer, recs []*pb.Record) error {
	names := map[string]bool{}
	for _, r := range recs {
		for name := range r.GetFields() {
			names[name] = true
		}
	}
	fields := make([]string, 0, len(names))
	for name := range names {
		fields = append(fields, name)
	}
	sort.Strings(fields)
	if _, err := io.WriteString(w, utf8BOM); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	write := func(row []string) error {
		for i, s := range row {
			row[i] = domain.InertCSVCell(s)
		}
		return cw.Write(row)
	}
	head := append([]string{"id", "kind", "version", "author_id"}, csvStatusColumns...)
	if err := write(append(head, fields...)); err != nil {
		return err
	}
	row := make([]string, len(head)+len(fields))
	for _, r := range recs {
		row[0], row[1], row[2], row[3] = r.GetId(), domain.KindName(r.GetKind()), fmt.Sprint(r.GetVersion()), r.GetAuthorId()
		copy(row[4:], csvStatusCells(r))
		for i, name := range fields {
			row[len(head)+i] = r.GetFields()[name].GetValue()
		}
		if err := write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// changeJSON is one changelog message as fieldctl hq tail --json prints it.
type changeJSON struct {
	Seq         uint64 `json:"seq"`
	ChangeID    string `json:"change_id"`
	Subject     string `json:"subject"`
	DeviceID    string `json:"device_id"`
	UserID      string `json:"user_id"`
	CommittedMs int64  `json:"committed_ms"`
	// Region is the change's town (pb.Change.region, named before
	// regions); FieldsyncRegion the region whose syncd committed it (the
	// Fieldsync-Region header; absent for a syncd without a region).
	Region          string `json:"region"`
	FieldsyncRegion string `json:"fieldsync_region,omitempty"`
	// Kind is the record's kind, or unit, person, link, device or refused.
	Kind   string        `json:"kind"`
	Record *hqRecordJSON `json:"record,omitempty"`
	// Exactly one of Record and these is set (protojson of the body).
	Unit    json.RawMessage `json:"unit,omitempty"`
	Person  json.RawMessage `json:"person,omitempty"`
	Link    json.RawMessage `json:"link,omitempty"`
	Device  json.RawMessage `json:"device,omitempty"`
	Refused json.RawMessage `json:"refused,omitempty"`
}

func hqTail(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-nats URL] [-nats-nkey FILE] [-nats-ca FILE] [-stream NAME] [-subject S] [-from-start] [-n N] [-f] [--json]", `
Reads the changelog stream (-stream, default `+domain.StreamName+`) with an ordered consumer and
prints one line per change: change number, change id, subject, record id,
kind and version; for the org's changes (kinds unit, person, link, device,
refused) the id of what changed, its kind and what it is now. Subjects are
fieldsync.changes.<town>.<kind>: filter a town with fieldsync.changes.T01.>
or a kind with fieldsync.changes.*.visit or fieldsync.changes.*.link.
A region's syncd publishes on fieldsync.changes.<region>.<town>.<kind> to
`+domain.StreamName+`_<REGION>; -stream `+domain.HQStreamName+` reads every region's
(filter one with fieldsync.changes.<region>.>); change numbers count per
region, and --json gives each change's fieldsync_region.
Without -nats it reads the URL syncd wrote to ./data/nats.url, else uses
`+defaultNATSURL+`.
As tail: -n N prints the last N changes in the stream (the first N with
-from-start), fewer if fewer exist, and exits; -f then keeps printing new
changes until Ctrl-C. Without -n it follows until Ctrl-C: new changes only,
or every change with -from-start.`, `
fieldctl hq tail -n 20
fieldctl hq tail -from-start -n 100
fieldctl hq tail -n 5 -f -subject 'fieldsync.changes.*.dispute' --json
fieldctl hq tail -stream `+domain.HQStreamName+` -subject 'fieldsync.changes.xiaonan.>' -n 20`)
	natsURL := fs.String("nats", "", "NATS `URL` (default: from ./data/nats.url, else "+defaultNATSURL+")")
	subject := fs.String("subject", domain.SubjectPrefix+".>", "only changes on this `subject` (wildcards * and >)")
	streamName := fs.String("stream", domain.StreamName, "the `stream` to read: "+domain.StreamName+", "+domain.StreamName+"_<REGION> or "+domain.HQStreamName)
	fromStart := fs.Bool("from-start", false, "start at the first change in the stream instead of the next new one")
	limit := fs.Int("n", 0, "print the last `N` changes that exist (the first N with -from-start) and exit (0: follow)")
	follow := fs.Bool("f", false, "with -n: after those, keep printing new changes until Ctrl-C")
	asJSON := fs.Bool("json", false, "print one JSON object a change (NDJSON)")
	conn := addNATSConnFlags(fs)
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("%s: -n %d: want 0 or more", short(name), *limit)
	}
	if err := checkDurable(*streamName); err != nil || *streamName == "" {
		return usagef("%s: -stream %q: want a stream's name, e.g. %s or %s", short(name), *streamName, domain.StreamName, domain.HQStreamName)
	}
	url := *natsURL
	if url == "" {
		b, err := os.ReadFile(defaultNATSFile)
		switch {
		case err == nil && strings.TrimSpace(string(b)) != "":
			url = strings.TrimSpace(string(b))
		case err == nil, errors.Is(err, iofs.ErrNotExist):
			url = defaultNATSURL
		default:
			return fmt.Errorf("read %s: %w", defaultNATSFile, err)
		}
	}
	opts, err := conn.options("fieldctl hq tail", url)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w (is syncd running? -nats sets the URL; -nats-nkey the credential, -nats-ca the CA for TLS)", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, *streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream %s on %s: is this the NATS syncd publishes to? (-stream names another: %s_<REGION> for a region, %s for every region)", *streamName, url, domain.StreamName, domain.HQStreamName)
	}
	if err != nil {
		return fmt.Errorf("stream %s on %s: %w", *streamName, url, err)
	}
	enc := newNDJSON(c.stdout)
	show := func(msg jetstream.Msg) error {
		ch := &pb.Change{}
		if err := proto.Unmarshal(msg.Data(), ch); err != nil {
			return fmt.Errorf("change on %s: not a fieldsync.v1.Change: %w", msg.Subject(), err)
		}
		if *asJSON {
			out := changeJSON{Seq: ch.GetSeq(), ChangeID: ch.GetChangeId(), Subject: msg.Subject(), DeviceID: ch.GetDeviceId(),
				UserID: ch.GetUserId(), CommittedMs: ch.GetCommittedMs(), Region: ch.GetRegion(), Kind: changeKind(ch),
				FieldsyncRegion: msg.Headers().Get(domain.HeaderRegion)}
			if rec := ch.GetRecord(); rec != nil {
				out.Record = toHQRecordJSON(rec)
			}
			org, err := orgJSON(ch)
			if err != nil {
				return fmt.Errorf("change %d: %w", ch.GetSeq(), err)
			}
			switch {
			case ch.GetUnit() != nil:
				out.Unit = org
			case ch.GetPerson() != nil:
				out.Person = org
			case ch.GetLink() != nil:
				out.Link = org
			case ch.GetDevice() != nil:
				out.Device = org
			case ch.GetRefused() != nil:
				out.Refused = org
			}
			return enc.Encode(out)
		}
		// A change on the stream is not proof it came from syncd: its
		// texts are escaped like any stored text.
		_, err := fmt.Fprintf(c.stdout, "%d %s %s %s\n", ch.GetSeq(), domain.EscapeText(ch.GetChangeId()), domain.EscapeText(msg.Subject()), orgLine(ch))
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{*subject}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *fromStart {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if *limit > 0 {
		// The changes that exist now: the stream's last one bounds them,
		// so that the command ends even when fewer than -n exist.
		info, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s on %s: %w", *streamName, url, err)
		}
		first, last := info.State.FirstSeq, info.State.LastSeq
		var backlog []jetstream.Msg
		if last > 0 {
			if backlog, err = tailBacklog(ctx, stream, *subject, first, last, *limit, *fromStart); err != nil {
				return fmt.Errorf("read changelog: %w", err)
			}
		}
		for _, msg := range backlog {
			if err := show(msg); err != nil {
				return err
			}
		}
		if !*follow || ctx.Err() != nil {
			return nil
		}
		// Follow from just after what existed: nothing published meanwhile
		// is missed.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", *subject, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume %s: %w", *subject, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil // interrupted: a normal end
		}
		if err != nil {
			return fmt.Errorf("read changelog: %w", err)
		}
		if err := show(msg); err != nil {
			return err
		}
	}
}

// tailBacklog returns up to n changes on subject among the stream's
// sequences first..last: the first n if fromStart, else the last n. For
// the last n it reads a window back from last, widened until it holds n
// matching changes or reaches first, so a narrow subject does not read
// the whole stream unless it must.
func tailBacklog(ctx context.Context, stream jetstream.Stream, subject string, first, last uint64, n int, fromStart bool) ([]jetstream.Msg, error) {
	if fromStart {
		return readRange(ctx, stream, subject, first, last, n)
	}
	for window := uint64(n); ; window *= 4 {
		start := first
		if last-first+1 > window {
			start = last - window + 1
		}
		msgs, err := readRange(ctx, stream, subject, start, last, 0)
		if err != nil {
			return nil, err
		}
		if len(msgs) >= n || start == first {
			return msgs[max(0, len(msgs)-n):], nil
		}
	}
}

// readRange reads the changes on subject with stream sequences from..to
// (at most limit of them if limit > 0). It never waits for a new change.
func readRange(ctx context.Context, stream jetstream.Stream, subject string, from, to uint64, limit int) ([]jetstream.Msg, error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil, nil // nothing on subject from there on
	}
	var msgs []jetstream.Msg
	for limit == 0 || len(msgs) < limit {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return msgs, err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return msgs, err
		}
		if meta.Sequence.Stream > to {
			break
		}
		msgs = append(msgs, msg)
		if meta.Sequence.Stream == to || meta.NumPending == 0 {
			break
		}
	}
	return msgs, nil
}
