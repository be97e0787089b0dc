// Command syncd is fieldsync's server. It keeps the authoritative SQLite
// database, serves devices, administrators and HQ over gRPC (package
// server), and relays every committed change to the JetStream changelog on
// a nats-server that it embeds by default or on an external one. It also
// serves the HQ page (-hq-listen) from a read model it keeps of the
// changelog.
//
// Run it with no flags for a working server on loopback: data in ./data,
// gRPC on 127.0.0.1:7443, embedded NATS on 127.0.0.1:4222, the HQ page on
// http://127.0.0.1:8480. syncd -h lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/buildinfo"
	"github.com/fieldsync/fieldsync/internal/cliflags"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, stopWatch := stopWithGoRun(ctx, os.Stderr) // go run dies on SIGTERM without passing it on
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopWatch()
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errFlags):
		os.Exit(2) // the flag package has already said what was wrong
	default:
		fmt.Fprintln(os.Stderr, "syncd:", err)
		os.Exit(1)
	}
}

// errFlags marks a command line that the flag package has already reported.
var errFlags = errors.New("bad command line")

// config is syncd's command line.
type config struct {
	data              string
	listen            string
	insecureListenAny bool
	plaintext         bool
	tlsHosts          string
	natsURL           string
	natsListen        string
	natsMaxStore      server.ByteSize
	adminTokenFile    string // empty: <data>/admin.token
	logLevel          string
	deviceRate        rateFlag
	userRate          rateFlag
	enrollRate        rateFlag
	deviceQuota       quotaFlag // quota.go; the zero value is the default
	userQuota         quotaFlag
	backup            string // empty: <data>/backup; "off": none
	backupInterval    time.Duration
	backupRetention   time.Duration
	logFormat         string
	metricsListen     string // empty: no metrics listener
	reflection        bool
	version           bool
	nats              natsFlags     // nats_flags.go
	retention         retentionFlag // retention.go; the zero value is the default
	hqListen          string        // "off": no HQ page and no read model
	hqTLSCert         string
	hqTLSKey          string
	region            string // "": no region
}

// defaultConfig holds every default in one place.
func defaultConfig() config {
	return config{
		data:       "./data",
		listen:     "127.0.0.1:7443",
		natsListen: "127.0.0.1:4222",
		hqListen:   syncd.DefaultHQListen,
		logLevel:   "info",
		logFormat:  "text",
		deviceRate: newRateFlag(server.DefaultDeviceLimit),
		userRate:   newRateFlag(server.DefaultUserLimit),
		enrollRate: newRateFlag(server.DefaultEnrollLimit),

		backupInterval:  backup.DefaultSyncInterval,
		backupRetention: backup.DefaultRetention,
	}
}

const usageIntro = `Usage: syncd [flags]
       syncd restore [flags]   (restore the database from its backup; syncd restore -h)
       syncd nats -config FILE (run a node of a NATS cluster for regions; syncd nats -h)

syncd is fieldsync's server. It keeps the authoritative SQLite database in
the -data directory, serves devices, administrators and HQ over gRPC on
-listen, and publishes every committed change to the JetStream changelog:
on a nats-server it embeds (the default, stored under <data>/nats) or on
the one -nats names. On first start it creates the admin credential that
fieldctl admin reads, and its own CA and server certificate in <data>/tls:
gRPC is TLS, and every enrollment code carries the CA's fingerprint, which
devices pin. Plain text only with -insecure-plaintext, and only on loopback.
The embedded NATS takes no connection without an NKey: syncd's own
(<data>/nats-syncd.nk) or an HQ credential (fieldctl admin hq-credential),
which only reads the changelog; beyond loopback it requires TLS. The audit
log's MAC key is <data>/audit.key: back it up apart from the database.
SIGINT or SIGTERM stops it cleanly: in-flight syncs finish and every
committed change is published before it exits. The database is backed up
continuously (Litestream) to -backup, <data>/backup by default. One syncd
per data directory: it holds <data>/syncd.lock while it runs.
It also serves the HQ page on -hq-listen (http://127.0.0.1:8480 by
default; -hq-listen off for none): the month's visit coverage, disputes,
needs, events, device health and event-chain integrity, from a read model
it keeps in <data>/hq/model.db by following the changelog (durable
consumer hq-syncd). HQ people and town
secretaries sign in with a one-time code: fieldctl hq signin-code PERSON.
Beyond loopback the page is HTTPS, with syncd's certificate or the one
-hq-tls-cert and -hq-tls-key give.
A province past one machine runs one syncd per region (-region R, each
with its own data directory), all publishing to one NATS JetStream cluster
(-nats URL1,URL2,URL3 -changelog-replicas 3), whose nodes syncd nats
-config FILE runs.

Flags:
`

func (c *config) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("syncd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageIntro)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+cliflags.Usage("SYNCD", "nats-max-store"))
	}
	fs.StringVar(&c.data, "data", c.data, "data `directory` (created mode 0700): the database fieldsync.db, the embedded NATS store, admin.token, audit.key and nats.url")
	fs.StringVar(&c.listen, "listen", c.listen, "gRPC listen `address`; port 0 picks a free one (the address is printed)")
	fs.BoolVar(&c.insecureListenAny, "insecure-listen-any", c.insecureListenAny, "no longer needed and ignored: the embedded NATS authenticates every connection and uses TLS beyond loopback")
	fs.BoolVar(&c.plaintext, "insecure-plaintext", c.plaintext, "serve gRPC without TLS (development only; -listen must be loopback)")
	fs.StringVar(&c.tlsHosts, "tls-hosts", c.tlsHosts, "comma-separated host `names` and IPs the server certificate covers besides the -listen host, localhost and 127.0.0.1 (a -listen on 0.0.0.0 covers every local address)")
	fs.StringVar(&c.natsURL, "nats", c.natsURL, "`URL` of an external NATS with JetStream (e.g. nats://10.0.0.5:4222); empty embeds a nats-server")
	fs.StringVar(&c.natsListen, "nats-listen", c.natsListen, "client `address` of the embedded NATS; port 0 or -1 picks a free one (written to <data>/nats.url)")
	fs.Var(&c.natsMaxStore, "nats-max-store", "`size` the embedded JetStream may store, e.g. 500GiB (default "+server.ByteSize(server.DefaultNATSMaxStore).String()+"): fixed here, not taken from the disk's free space at start")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", c.adminTokenFile, "`file` holding the admin credential, created (mode 0600) on first start if missing (default <data>/admin.token)")
	fs.Var(cliflags.Checked(&c.logLevel, checkLogLevel), "log-level", "log `level` on stderr: debug, info, warn or error")
	const over = ": N/s or N/m, optional ,burst=B (else the default's), or off. A call over it gets ResourceExhausted with a RetryInfo saying how long to wait, which the syncer honours"
	fs.Var(&c.deviceRate, "device-rate", "rate `limit` on each device's sync calls"+over)
	fs.Var(&c.userRate, "user-rate", "rate `limit` on the sync calls of all one user's devices together"+over)
	fs.StringVar(&c.backup, "backup", c.backup, "where the database is backed up continuously: a `directory`, s3://bucket/path (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the usual AWS chain; ?endpoint=host:port for other S3-compatible storage), nats://host:port/bucket (a JetStream object store), or off (default <data>/backup: on the same disk, it undoes mistakes but does not survive the disk)")
	fs.DurationVar(&c.backupInterval, "backup-interval", c.backupInterval, "how often committed writes are shipped to the backup: the most a restore can lose")
	fs.DurationVar(&c.backupRetention, "backup-retention", c.backupRetention, "how far back syncd restore -timestamp can go")
	c.nats.register(fs)
	fs.Var(&c.enrollRate, "enroll-rate", "rate `limit` on failed Enroll calls (bad codes) per IP address or IPv6 /64, to slow code guessing (successful ones are free)"+over)
	fs.Var(cliflags.Checked(&c.logFormat, cliflags.OneOf("text", "json")), "log-format", "log `format` on stderr: text, or json (one object a line, for log collectors)")
	fs.StringVar(&c.metricsListen, "metrics-listen", c.metricsListen, "HTTP `address` serving Prometheus metrics at /metrics and a health check at /healthz, e.g. 127.0.0.1:9464 (default off; no TLS and no credential: keep it on loopback or a management network)")
	fs.BoolVar(&c.reflection, "reflection", c.reflection, "serve gRPC server reflection (grpcurl lists and describes the services without the .proto), without a credential")
	fs.BoolVar(&c.version, "version", c.version, "print the version (module, VCS revision and time, Go) and exit")
	fs.Var(cliflags.Checked(&c.hqListen, checkHQListen), "hq-listen", "`address` of the HQ page (and its read model, <data>/hq), or off; plain HTTP on loopback, HTTPS beyond it (with syncd's certificate unless -hq-tls-cert is given; the address is added to the certificate's names)")
	fs.StringVar(&c.hqTLSCert, "hq-tls-cert", c.hqTLSCert, "certificate `file` (PEM, with its chain) the HQ page serves HTTPS with, instead of syncd's own; needs -hq-tls-key")
	fs.StringVar(&c.hqTLSKey, "hq-tls-key", c.hqTLSKey, "private key `file` (PEM) of -hq-tls-cert")
	fs.Var(cliflags.Checked(&c.region, domain.CheckRegion), "region", "the `region` this syncd is (lower-case letters and digits, starting with a letter, e.g. xiaonan), when a province runs one syncd per region on one NATS cluster: the changelog goes to stream FIELDSYNC_CHANGES_<REGION> on subjects fieldsync.changes.<region>.>, and the import takes only ids starting with <region>-. The database keeps the region it first ran with and refuses another. Default: no region (stream FIELDSYNC_CHANGES)")
	c.quotaFlags(fs)
	c.retentionFlags(fs)
	return fs
}

// run is syncd: it serves until ctx ends, then stops in order.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "restore" {
		return runRestore(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "nats" {
		return runNATS(ctx, args[1:], stdout, stderr)
	}
	cfg := defaultConfig()
	fs := cfg.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errFlags, err)
	}
	if err := cliflags.ApplyEnv(fs, "SYNCD"); err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, buildinfo.Line("syncd"))
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: syncd takes flags, or the command restore or nats (see syncd -h)", fs.Arg(0))
	}
	cfg.nats.explicit(fs)
	if err := cfg.nats.check(cfg.natsURL != "", int64(cfg.natsMaxStore)); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", cfg.logLevel)
	}
	logHandler, err := newLogHandler(stderr, cfg.logFormat, level)
	if err != nil {
		return err
	}
	log := slog.New(logHandler)

	if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
		return fmt.Errorf("-listen %q: %v: want host:port, e.g. 127.0.0.1:7443", cfg.listen, err)
	}
	if cfg.plaintext {
		if err := checkLoopback("-listen", cfg.listen, false,
			"with -insecure-plaintext, device and admin credentials and every record would cross the network readable by anyone on the path",
			"plain text is only for loopback: drop -insecure-plaintext (TLS is the default) or listen on 127.0.0.1"); err != nil {
			return err
		}
	}
	var natsHost string
	var natsPort int
	var natsOpts []nats.Option
	if cfg.natsURL == "" {
		var err error
		if natsHost, natsPort, err = parseNATSListen(cfg.natsListen); err != nil {
			return err
		}
		if n := cfg.nats; n.creds != "" || n.nkey != "" || n.ca != "" || n.cert != "" {
			return errors.New("-nats-creds, -nats-nkey, -nats-ca and -nats-cert are for an external NATS (-nats URL); the embedded one makes its own (see fieldctl admin hq-credential)")
		}
	} else if natsOpts, err = cfg.nats.clientOptions(); err != nil {
		return err
	}
	if cfg.insecureListenAny {
		log.Warn("-insecure-listen-any is no longer needed and is ignored: the embedded NATS authenticates every connection (NKeys) and uses TLS beyond loopback")
	}

	hqListen := cfg.hqListen
	if hqListen == "off" {
		hqListen = ""
		if cfg.hqTLSCert != "" || cfg.hqTLSKey != "" {
			return errors.New("-hq-tls-cert and -hq-tls-key are for the HQ page, and -hq-listen is off")
		}
	}
	hqDefault := true
	fs.Visit(func(f *flag.Flag) { hqDefault = hqDefault && f.Name != "hq-listen" })

	var tlsHosts []string
	for _, h := range strings.Split(cfg.tlsHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			tlsHosts = append(tlsHosts, h)
		}
	}
	// Litestream reports each monitor it starts and each compaction at
	// info: below warnings, only when asked for debug.
	backupLevel := max(level, slog.LevelWarn)
	if level < slog.LevelInfo {
		backupLevel = level
	}
	backupHandler, _ := newLogHandler(stderr, cfg.logFormat, backupLevel)
	d, err := syncd.Start(ctx, syncd.Config{
		Dir:             cfg.data,
		Listen:          cfg.listen,
		Plaintext:       cfg.plaintext,
		TLSHosts:        tlsHosts,
		NATSURL:         cfg.natsURL,
		NATSHost:        natsHost,
		NATSPort:        natsPort,
		NATSMaxStore:    int64(cfg.natsMaxStore),
		NATSOptions:     natsOpts,
		StreamLimits:    cfg.nats.limits,
		Region:          cfg.region,
		AdminTokenFile:  cfg.adminTokenFile,
		Backup:          backupLocation(cfg.data, cfg.backup),
		BackupInterval:  cfg.backupInterval,
		BackupRetention: cfg.backupRetention,
		BackupLogger:    slog.New(backupHandler),
		MetricsListen:   cfg.metricsListen,
		Reflection:      cfg.reflection,
		Server: func(c *server.Config) {
			c.DeviceLimit = cfg.deviceRate.limit()
			c.UserLimit = cfg.userRate.limit()
			c.EnrollLimit = cfg.enrollRate.limit()
			c.DeviceQuota = cfg.deviceQuota.quota()
			c.UserQuota = cfg.userQuota.quota()
		},
		Logger:    log,
		Out:       stdout,
		Retention: cfg.retention.window(),

		HQListen:          hqListen,
		HQListenIsDefault: hqDefault,
		HQTLSCert:         cfg.hqTLSCert,
		HQTLSKey:          cfg.hqTLSKey,
	})
	if err != nil {
		return err
	}

	var serveErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "syncd: stopping: finishing in-flight requests and publishing the changelog")
	case serveErr = <-d.Serving():
		if serveErr != nil {
			serveErr = fmt.Errorf("serve gRPC: %w", serveErr)
		}
	}
	if err := errors.Join(serveErr, d.Stop()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "syncd: stopped cleanly")
	return nil
}

// checkHQListen accepts host:port or off.
func checkHQListen(v string) error {
	if v == "off" {
		return nil
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("%q: %v: want host:port, e.g. %s, or off", v, err, syncd.DefaultHQListen)
	}
	return nil
}

// checkLoopback refuses a non-loopback address unless allowed; why says
// what would be exposed.
func checkLoopback(flagName, addr string, allowAny bool, why, remedy string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %v: want host:port, e.g. 127.0.0.1:7443", flagName, addr, err)
	}
	if allowAny || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s %s is not a loopback address, and %s: %s", flagName, addr, why, remedy)
}

// parseNATSListen splits the embedded NATS address; port 0 or -1 means a
// free port (nats-server itself takes 0 as its default, 4222).
func parseNATSListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("-nats-listen %q: %v: want host:port, e.g. 127.0.0.1:4222", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("-nats-listen %q: port must be 1-65535, or 0 or -1 for a free one", addr)
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	return host, port, nil
}

// backupLocation is where -backup says the backup goes: "" for off.
func backupLocation(data, flagValue string) string {
	switch flagValue {
	case "off":
		return ""
	case "":
		return filepath.Join(data, "backup")
	}
	return flagValue
}
