package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
)

// Defaults of the HQ page's commands. syncd keeps its read model and page
// database in <data>/hq; fieldctl hq web in ./hq, so that both can run on
// one machine without sharing a read model.
const (
	defaultSyncdHQDir = defaultDataDir + "/hq"
	defaultWebHQDir   = "./hq"
	defaultCodeTTL    = 24 * time.Hour
)

// progressInterval is how often fieldctl hq web says where the read model
// stands while it moves.
var progressInterval = 10 * time.Second

func hqWeb(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-nats URL] [-nats-nkey FILE] [-nats-ca FILE] [-hq-dir DIR] [-listen ADDR] [-tls-cert FILE -tls-key FILE] [-durable NAME] [-stream NAME]", `
Runs the HQ page on its own, against any NATS that carries the changelog
(`+domain.StreamName+`): for an HQ office away from syncd. It follows the
changelog with a durable JetStream consumer (-durable) into the read model
<hq-dir>/`+syncd.HQModelFile+` (plain SQLite tables any SQL or BI tool reads;
delete it to rebuild from the stream) and serves the page on -listen; its
sign-in codes, sessions and audit are in <hq-dir>/`+syncd.HQWebFile+`.
Sign in with a code from fieldctl hq signin-code -hq-dir <hq-dir> PERSON.
Plain HTTP only on loopback: elsewhere give -tls-cert and -tls-key.
syncd itself serves the same page beside its own NATS (syncd -hq-listen);
this is for elsewhere. Two of them following one NATS each need their own
-durable. Without -nats it reads the URL syncd wrote to ./data/nats.url,
else uses `+defaultNATSURL+`. Runs until Ctrl-C.
A province of several regions: -stream `+domain.HQStreamName+` follows HQ's
stream that sources every region's (made by fieldctl hq stream); the page
then shows each town's region and the coverage per region.`, `
fieldctl hq web -nats tls://syncd.example:4222 -nats-nkey hq-office.nk -nats-ca ca.pem
fieldctl hq web -nats nats://n1:4222,nats://n2:4222,nats://n3:4222 -stream `+domain.HQStreamName+` -hq-dir /srv/hq
fieldctl hq web -listen 0.0.0.0:8443 -tls-cert hq.pem -tls-key hq-key.pem -hq-dir /srv/hq`)
	natsURL := fs.String("nats", "", "NATS `URL` (default: from ./data/nats.url, else "+defaultNATSURL+")")
	conn := addNATSConnFlags(fs)
	dir := fs.String("hq-dir", defaultWebHQDir, "`directory` of the read model ("+syncd.HQModelFile+") and the page's database ("+syncd.HQWebFile+"), created mode 0700")
	listen := fs.String("listen", syncd.DefaultHQListen, "the page's `address`; plain HTTP only on loopback, else give -tls-cert and -tls-key")
	certFile := fs.String("tls-cert", "", "certificate `file` (PEM, with its chain) to serve HTTPS with; needs -tls-key")
	keyFile := fs.String("tls-key", "", "private key `file` (PEM) of -tls-cert")
	durable := fs.String("durable", syncd.HQDurableWeb, "`name` of the durable consumer that keeps the read model's place in the changelog")
	streamName := fs.String("stream", domain.StreamName, "the `stream` to follow: "+domain.StreamName+" (one syncd), "+domain.StreamName+"_<REGION> (one region) or "+domain.HQStreamName+" (every region)")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("%s: -hq-dir is empty: want a directory", short(name))
	}
	if err := checkDurable(*durable); err != nil {
		return usagef("%s: -durable %q: %v", short(name), *durable, err)
	}
	if err := checkDurable(*streamName); err != nil || *streamName == "" {
		return usagef("%s: -stream %q: want a stream's name, e.g. %s or %s", short(name), *streamName, domain.StreamName, domain.HQStreamName)
	}
	tlsCfg, err := syncd.LoadHQCert("-tls-cert", *certFile, "-tls-key", *keyFile)
	if err != nil {
		return usagef("%s: %v", short(name), err)
	}
	if tlsCfg == nil {
		if err := web.CheckPlainListen(*listen); err != nil {
			return usagef("%s: -listen %s: %v: give -tls-cert and -tls-key to serve HTTPS, or listen on 127.0.0.1", short(name), *listen, err)
		}
	}
	lis, err := syncd.ListenHQ("-listen", *listen, tlsCfg != nil)
	if err != nil {
		return err
	}
	closeLis := true
	defer func() {
		if closeLis {
			lis.Close()
		}
	}()

	u, err := natsURLOrDefault(*natsURL)
	if err != nil {
		return err
	}
	opts, err := conn.options("fieldctl hq web", u)
	if err != nil {
		return err
	}
	// Keep trying while NATS is away: the read model resumes where it was.
	opts = append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				fmt.Fprintf(c.stderr, "fieldctl: NATS connection lost (%v); reconnecting\n", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(c.stderr, "fieldctl: NATS reconnected to %s\n", nc.ConnectedUrlRedacted())
		}))
	nc, err := nats.Connect(u, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w (is syncd running? -nats sets the URL; -nats-nkey the credential, -nats-ca the CA for TLS)", syncd.RedactURLs(u), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	fmt.Fprintf(c.stderr, "fieldctl: connected to NATS at %s\n", syncd.RedactURLs(u))
	var streamLast uint64
	if info, err := js.Stream(ctx, *streamName); err == nil {
		streamLast = info.CachedInfo().State.LastSeq
		fmt.Fprintf(c.stderr, "fieldctl: changelog %s holds changes up to %d\n", *streamName, streamLast)
	} else if errors.Is(err, jetstream.ErrStreamNotFound) {
		fmt.Fprintf(c.stderr, "fieldctl: no stream %s on %s yet: waiting for syncd (or fieldctl hq stream) to make it\n", *streamName, syncd.RedactURLs(u))
	} else {
		fmt.Fprintf(c.stderr, "fieldctl: changelog %s not readable yet (%v): the read model keeps trying\n", *streamName, err)
	}

	hint := "fieldctl hq signin-code -hq-dir " + *dir + " PERSON"
	closeLis = false // StartHQ owns it now
	h, err := syncd.StartHQ(ctx, syncd.HQConfig{
		Dir:        *dir,
		Listener:   lis,
		TLS:        tlsCfg,
		JS:         js,
		Durable:    *durable,
		Stream:     *streamName,
		SigninHint: hint,
		Prefix:     "fieldctl: ",
		Log:        slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Out:        c.stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "fieldctl: read model %s at change %d, following as durable consumer %s\n",
		filepath.Join(*dir, syncd.HQModelFile), h.Model.LastSeq(), *durable)

	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	last, caughtUp := h.Model.LastSeq(), false
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-tick.C:
			now := h.Model.LastSeq()
			if now != last {
				fmt.Fprintf(c.stderr, "fieldctl: read model at change %d\n", now)
				last = now
			}
			if !caughtUp && streamLast > 0 && h.Model.StreamSeq() >= streamLast {
				caughtUp = true
				fmt.Fprintf(c.stderr, "fieldctl: read model caught up with the changelog (change %d)\n", now)
			}
		}
	}
	fmt.Fprintln(c.stderr, "fieldctl: stopping the HQ page and the read model")
	last = h.Model.LastSeq()
	if err := h.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "fieldctl: stopped at change %d\n", last)
	return nil
}

// checkDurable allows the names JetStream takes for a durable consumer.
func checkDurable(s string) error {
	if s == "" {
		return errors.New("empty: want a name such as " + syncd.HQDurableWeb)
	}
	for _, r := range s {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r > '~' {
			return errors.New("want letters, digits, - and _ only")
		}
	}
	return nil
}

// natsURLOrDefault is -nats, else the URL syncd wrote to ./data/nats.url,
// else the default.
func natsURLOrDefault(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	b, err := os.ReadFile(defaultNATSFile)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err == nil, errors.Is(err, iofs.ErrNotExist):
		return defaultNATSURL, nil
	default:
		return "", fmt.Errorf("read %s: %w", defaultNATSFile, err)
	}
}

func hqSigninCode(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-ttl 24h] [-hq-dir DIR] [--json] PERSON", `
Issues a one-time sign-in code for the HQ page to PERSON (a person id from
the org import): HQ people (role hq) see the whole city, a secretary of a
town sees that town only; nobody else may sign in. Sign in on the page
with the person id and the code; the code works once, until -ttl has
passed, and only its hash is stored. It is written to the page's database
in -hq-dir: syncd's <data>/hq by default (the page syncd serves), or the
-hq-dir of fieldctl hq web. Issuing is audited (fieldctl hq audit).`, `
fieldctl hq signin-code U-hq
fieldctl hq signin-code -ttl 2h -hq-dir ./hq U-sec-T02`)
	dir := fs.String("hq-dir", defaultSyncdHQDir, "`directory` of the HQ page's databases: syncd's <data>/hq, or fieldctl hq web's -hq-dir")
	ttl := fs.Duration("ttl", defaultCodeTTL, "how long the code stays valid (`duration`, e.g. 2h; at most 720h)")
	asJSON := fs.Bool("json", false, "print the code as a JSON object")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("%s: want exactly one PERSON (a person id from the org import), got %d arguments (see %s -h)", short(name), len(rest), name)
	}
	person := strings.TrimSpace(rest[0])
	if person == "" {
		return usagef("%s: PERSON is empty: want a person id from the org import", short(name))
	}
	if *ttl <= 0 || *ttl > 720*time.Hour {
		return usagef("%s: -ttl %s: want more than 0 and at most 720h", short(name), *ttl)
	}
	model, err := openHQModel(*dir)
	if err != nil {
		return err
	}
	defer model.Close()
	who, err := describeHQPerson(ctx, model, person)
	if err != nil {
		return err
	}
	code, err := web.IssueCode(ctx, filepath.Join(*dir, syncd.HQWebFile), model, person, *ttl, issuer())
	if err != nil {
		return fmt.Errorf("%s: %w", short(name), err)
	}
	until := c.now().Add(*ttl)
	if *asJSON {
		return newNDJSON(c.stdout).Encode(struct {
			Person     string `json:"person"`
			Name       string `json:"name"`
			Role       string `json:"role"`
			Scope      string `json:"scope"`
			ScopeTown  string `json:"scope_town"`
			Code       string `json:"code"`
			ValidUntil string `json:"valid_until"`
		}{person, who.name, who.role, who.scope, who.town, code, until.UTC().Format(time.RFC3339)})
	}
	fmt.Fprintf(c.stdout, "sign-in code: %s\n", code)
	fmt.Fprintf(c.stdout, "signs in as:  %s %s (%s)\n", domain.EscapeText(person), domain.EscapeText(who.name), who.role)
	fmt.Fprintf(c.stdout, "scope:        %s\n", domain.EscapeText(who.scope))
	fmt.Fprintf(c.stdout, "valid until:  %s (China time), once\n", until.In(chinaTime).Format("2006-01-02 15:04"))
	return nil
}

// chinaTime is UTC+8, the users' time.
var chinaTime = time.FixedZone("CST", 8*3600)

// issuer names who issued a code, for the audit.
func issuer() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "fieldctl:" + u.Username
	}
	return "fieldctl"
}

// openHQModel opens the read model in dir to read, refusing a directory
// without one (a mistyped -hq-dir would otherwise look like an unknown
// person).
func openHQModel(dir string) (*sql.DB, error) {
	path := filepath.Join(dir, syncd.HQModelFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("no HQ read model at %s: -hq-dir must be the directory syncd keeps it in (<data>/hq, default %s) or fieldctl hq web's -hq-dir; has syncd run with the HQ page on?", path, defaultSyncdHQDir)
		}
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// hqPerson is who a sign-in code signs in as.
type hqPerson struct {
	name, role, scope, town string
}

// describeHQPerson says who person is and what they would see, from the
// read model; web.IssueCode decides whether they may sign in at all.
func describeHQPerson(ctx context.Context, model *sql.DB, person string) (hqPerson, error) {
	var p hqPerson
	var unit string
	err := model.QueryRowContext(ctx, `SELECT name, role, unit_id FROM people WHERE id = ?`, person).Scan(&p.name, &p.role, &unit)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("no person %q in the HQ read model: want a person id from the org import (fieldctl admin people); a person imported just now appears once the read model has followed the changelog", person)
	}
	if err != nil {
		return p, fmt.Errorf("read model: %w", err)
	}
	switch p.role {
	case "hq":
		p.scope = "the whole city"
	case "secretary":
		var kind, unitName string
		if err := model.QueryRowContext(ctx, `SELECT kind, name FROM units WHERE id = ?`, unit).Scan(&kind, &unitName); err == nil && kind == "town" {
			p.scope, p.town = fmt.Sprintf("the town %s %s only", unit, unitName), unit
		} else {
			p.scope = fmt.Sprintf("none: a secretary of %s, not of a town", unit)
		}
	default:
		p.scope = "none: a " + p.role
	}
	return p, nil
}

func hqAudit(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[-hq-dir DIR] [-person ID] [-n N] [--json]", `
Lists the HQ page's audit, oldest first: every sign-in (accepted or
refused), sign-out, sign-in code issued, page or download refused (outside
the person's town) and download, with its time (China time), the person,
the action, what it was about and the remote address.
It reads the page's database in -hq-dir: syncd's <data>/hq by default, or
the -hq-dir of fieldctl hq web.`, `
fieldctl hq audit
fieldctl hq audit -n 20 -person U-hq --json`)
	dir := fs.String("hq-dir", defaultSyncdHQDir, "`directory` of the HQ page's databases: syncd's <data>/hq, or fieldctl hq web's -hq-dir")
	person := fs.String("person", "", "only this person's entries (`id`)")
	limit := fs.Int("n", 0, "only the last `N` entries (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON object an entry (NDJSON)")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("%s: -n %d: want 0 or more", short(name), *limit)
	}
	entries, err := readHQAudit(ctx, filepath.Join(*dir, syncd.HQWebFile), *person, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := newNDJSON(c.stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(c.stderr, "fieldctl: the HQ page's audit is empty")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC+8)\tPERSON\tACTION\tDETAIL\tREMOTE")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", time.UnixMilli(e.AtMs).In(chinaTime).Format("2006-01-02 15:04:05"),
			domain.EscapeText(e.PersonID), domain.EscapeText(e.Action), domain.EscapeText(e.Detail), domain.EscapeText(e.Remote))
	}
	return tw.Flush()
}

// readHQAudit reads the audit from the page's database at path, oldest
// first: the last limit entries (all if 0), of person if not empty.
func readHQAudit(ctx context.Context, path, person string, limit int) ([]web.AuditEntry, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("no HQ page database at %s: -hq-dir must be the directory syncd keeps it in (<data>/hq, default %s) or fieldctl hq web's -hq-dir", path, defaultSyncdHQDir)
		}
		return nil, err
	}
	all, err := web.Audit(ctx, path, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("read the audit in %s: %w", path, err)
	}
	var out []web.AuditEntry
	for _, e := range all {
		if person == "" || e.PersonID == person {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
