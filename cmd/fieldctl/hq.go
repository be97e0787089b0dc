package main

import (
	"bufio"
	"context"
	"encoding/csv"
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
		summary: "export every record, or tail the JetStream changelog",
		about: `fieldctl hq reads everything: export streams records from syncd with the
admin credential; tail follows the changelog on NATS JetStream.`,
		flags: serverFlags,
		sub: []*command{
			{name: "export", summary: "stream every record changed after a version, as NDJSON or CSV", run: hqExport},
			{name: "tail", summary: "follow the changelog stream, one line per change", run: hqTail},
		},
	}
}

func hqExport(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-format ndjson|csv] [-after N] [-kind K[,K]] [-o FILE]", `
Streams every record whose version (change number) is after -after, as it is
now, in version order. NDJSON writes one object a line:
  {"id","kind","version","author_id","origin_device_id","fields":{name:value},
   "entries":[...],"conflicts":[...],"buckets":[...]}
CSV writes one row a record: id,kind,version,author_id and then every field
name (sorted); entries (dispute notes and sessions) and conflicts are only in
NDJSON. Apply records by id, keeping the highest version. The last version
is printed on stderr: pass it as -after to fetch only what changed since.`, `
fieldctl hq export -o all.ndjson
fieldctl hq export -format csv -kind visit -o visits.csv
fieldctl hq export -after 120345 -kind dispute,event`)
	format := fs.String("format", "ndjson", "output `format`: ndjson or csv")
	after := fs.Uint64("after", 0, "export records with a version after this change `number` (0: all)")
	kindList := fs.String("kind", "", "only these `kinds`, comma-separated: household, visit, dispute, event")
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
		n    int
		last = *after
		recs []*pb.Record // CSV only: its columns are known at the end
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
			} else if err := enc.Encode(toRecordJSON(r)); err != nil {
				return fmt.Errorf("export: write: %w", err)
			}
			n++
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
	return nil
}

// writeCSV writes one row a record: id, kind, version, author and every
// field name that any record has, sorted.
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
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"id", "kind", "version", "author_id"}, fields...)); err != nil {
		return err
	}
	row := make([]string, 4+len(fields))
	for _, r := range recs {
		row[0], row[1], row[2], row[3] = r.GetId(), domain.KindName(r.GetKind()), fmt.Sprint(r.GetVersion()), r.GetAuthorId()
		for i, name := range fields {
			row[4+i] = r.GetFields()[name].GetValue()
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// changeJSON is one changelog message as fieldctl hq tail --json prints it.
type changeJSON struct {
	Seq         uint64      `json:"seq"`
	ChangeID    string      `json:"change_id"`
	Subject     string      `json:"subject"`
	DeviceID    string      `json:"device_id"`
	UserID      string      `json:"user_id"`
	CommittedMs int64       `json:"committed_ms"`
	Region      string      `json:"region"`
	Record      *recordJSON `json:"record"`
}

func hqTail(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-nats URL] [-nats-nkey FILE] [-nats-ca FILE] [-subject S] [-from-start] [-n N] [--json]", `
Follows the changelog stream `+domain.StreamName+` with an ordered consumer and
prints one line per change: change number, change id, subject, record id,
kind and version. Subjects are fieldsync.changes.<town>.<kind>: filter a
town with fieldsync.changes.T01.> or a kind with fieldsync.changes.*.visit.
Without -nats it reads the URL syncd wrote to ./data/nats.url, else uses
`+defaultNATSURL+`. Runs until Ctrl-C, or until -n changes are printed.`, `
fieldctl hq tail -from-start -n 100
fieldctl hq tail -subject 'fieldsync.changes.*.dispute' --json`)
	natsURL := fs.String("nats", "", "NATS `URL` (default: from ./data/nats.url, else "+defaultNATSURL+")")
	subject := fs.String("subject", domain.SubjectPrefix+".>", "only changes on this `subject` (wildcards * and >)")
	fromStart := fs.Bool("from-start", false, "start at the first change in the stream instead of the next new one")
	limit := fs.Int("n", 0, "stop after this many changes (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print one JSON object a change (NDJSON)")
	conn := addNATSConnFlags(fs)
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("%s: -n %d: want 0 or more", short(name), *limit)
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
	stream, err := js.Stream(ctx, domain.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream %s on %s: is this the NATS syncd publishes to?", domain.StreamName, url)
	}
	if err != nil {
		return fmt.Errorf("stream %s on %s: %w", domain.StreamName, url, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{*subject}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *fromStart {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
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
	enc := newNDJSON(c.stdout)
	for n := 0; *limit == 0 || n < *limit; n++ {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil // interrupted: a normal end
		}
		if err != nil {
			return fmt.Errorf("read changelog: %w", err)
		}
		ch := &pb.Change{}
		if err := proto.Unmarshal(msg.Data(), ch); err != nil {
			return fmt.Errorf("change on %s: not a fieldsync.v1.Change: %w", msg.Subject(), err)
		}
		rec := ch.GetRecord()
		if *asJSON {
			err = enc.Encode(changeJSON{Seq: ch.GetSeq(), ChangeID: ch.GetChangeId(), Subject: msg.Subject(), DeviceID: ch.GetDeviceId(),
				UserID: ch.GetUserId(), CommittedMs: ch.GetCommittedMs(), Region: ch.GetRegion(), Record: toRecordJSON(rec)})
		} else {
			_, err = fmt.Fprintf(c.stdout, "%d %s %s %s %s v%d\n", ch.GetSeq(), ch.GetChangeId(), msg.Subject(),
				rec.GetId(), domain.KindName(rec.GetKind()), rec.GetVersion())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
