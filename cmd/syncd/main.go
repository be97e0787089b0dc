// Command syncd is fieldsync's server. It keeps the authoritative SQLite
// database, serves devices, administrators and HQ over gRPC (package
// server), and relays every committed change to the JetStream changelog on
// a nats-server that it embeds by default or on an external one.
//
// Run it with no flags for a working server on loopback: data in ./data,
// gRPC on 127.0.0.1:7443, embedded NATS on 127.0.0.1:4222. syncd -h lists
// the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
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

// stopTimeout bounds each step of shutdown that waits on others: in-flight
// RPCs, then the relay catching up with the database.
const stopTimeout = 10 * time.Second

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
	backup            string // empty: <data>/backup; "off": none
	backupInterval    time.Duration
	backupRetention   time.Duration
	nats              natsFlags // nats_flags.go
}

// defaultConfig holds every default in one place.
func defaultConfig() config {
	return config{
		data:       "./data",
		listen:     "127.0.0.1:7443",
		natsListen: "127.0.0.1:4222",
		logLevel:   "info",
		deviceRate: newRateFlag(server.DefaultDeviceLimit),
		userRate:   newRateFlag(server.DefaultUserLimit),
		enrollRate: newRateFlag(server.DefaultEnrollLimit),

		backupInterval:  backup.DefaultSyncInterval,
		backupRetention: backup.DefaultRetention,
	}
}

const usageIntro = `Usage: syncd [flags]
       syncd restore [flags]   (restore the database from its backup; syncd restore -h)

syncd is fieldsync's server. It keeps the authoritative SQLite database in
the -data directory, serves devices, administrators and HQ over gRPC on
-listen, and publishes every committed change to the JetStream changelog:
on a nats-server it embeds (the default, stored under <data>/nats) or on
the one -nats names. On first start it creates the admin credential that
fieldctl admin reads, and its own CA and server certificate in <data>/tls:
gRPC is TLS, and every enrollment code carries the CA's fingerprint, which
devices pin. Plain text only with -insecure-plaintext, and only on loopback.
SIGINT or SIGTERM stops it cleanly: in-flight syncs finish and every
committed change is published before it exits. The database is backed up
continuously (Litestream) to -backup, <data>/backup by default. One syncd
per data directory: it holds <data>/syncd.lock while it runs.

Flags:
`

func (c *config) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("syncd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageIntro)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.data, "data", c.data, "data `directory` (created mode 0700): the database fieldsync.db, the embedded NATS store, admin.token and nats.url")
	fs.StringVar(&c.listen, "listen", c.listen, "gRPC listen `address`; port 0 picks a free one (the address is printed)")
	fs.BoolVar(&c.insecureListenAny, "insecure-listen-any", c.insecureListenAny, "no longer needed and ignored: the embedded NATS authenticates every connection and uses TLS beyond loopback")
	fs.BoolVar(&c.plaintext, "insecure-plaintext", c.plaintext, "serve gRPC without TLS (development only; -listen must be loopback)")
	fs.StringVar(&c.tlsHosts, "tls-hosts", c.tlsHosts, "comma-separated host `names` and IPs the server certificate covers besides the -listen host, localhost and 127.0.0.1 (a -listen on 0.0.0.0 covers every local address)")
	fs.StringVar(&c.natsURL, "nats", c.natsURL, "`URL` of an external NATS with JetStream (e.g. nats://10.0.0.5:4222); empty embeds a nats-server")
	fs.StringVar(&c.natsListen, "nats-listen", c.natsListen, "client `address` of the embedded NATS; port 0 or -1 picks a free one (written to <data>/nats.url)")
	fs.Var(&c.natsMaxStore, "nats-max-store", "`size` the embedded JetStream may store, e.g. 500GiB (default "+server.ByteSize(server.DefaultNATSMaxStore).String()+"): fixed here, not taken from the disk's free space at start")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", c.adminTokenFile, "`file` holding the admin credential, created (mode 0600) on first start if missing (default <data>/admin.token)")
	fs.StringVar(&c.logLevel, "log-level", c.logLevel, "log `level` on stderr: debug, info, warn or error")
	const over = ": N/s or N/m, optional ,burst=B (else the default's), or off. A call over it gets ResourceExhausted with a RetryInfo saying how long to wait, which the syncer honours"
	fs.Var(&c.deviceRate, "device-rate", "rate `limit` on each device's sync calls"+over)
	fs.Var(&c.userRate, "user-rate", "rate `limit` on the sync calls of all one user's devices together"+over)
	fs.StringVar(&c.backup, "backup", c.backup, "where the database is backed up continuously: a `directory`, s3://bucket/path (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the usual AWS chain; ?endpoint=host:port for other S3-compatible storage), nats://host:port/bucket (a JetStream object store), or off (default <data>/backup: on the same disk, it undoes mistakes but does not survive the disk)")
	fs.DurationVar(&c.backupInterval, "backup-interval", c.backupInterval, "how often committed writes are shipped to the backup: the most a restore can lose")
	fs.DurationVar(&c.backupRetention, "backup-retention", c.backupRetention, "how far back syncd restore -timestamp can go")
	c.nats.register(fs)
	fs.Var(&c.enrollRate, "enroll-rate", "rate `limit` on failed Enroll calls (bad codes) per IP address or IPv6 /64, to slow code guessing (successful ones are free)"+over)
	return fs
}

// run is syncd: it serves until ctx ends, then stops in order.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "restore" {
		return runRestore(ctx, args[1:], stdout, stderr)
	}
	cfg := defaultConfig()
	fs := cfg.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errFlags, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: syncd takes flags, or the command restore (see syncd -h)", fs.Arg(0))
	}
	cfg.nats.explicit(fs)
	if err := cfg.nats.check(cfg.natsURL != "", int64(cfg.natsMaxStore)); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", cfg.logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

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
	if cfg.natsURL == "" {
		var err error
		if natsHost, natsPort, err = parseNATSListen(cfg.natsListen); err != nil {
			return err
		}
	}
	if cfg.insecureListenAny {
		log.Warn("-insecure-listen-any is no longer needed and is ignored: the embedded NATS authenticates every connection (NKeys) and uses TLS beyond loopback")
	}

	// Listen before touching the data directory, so that a second syncd on
	// the same address fails at once and changes nothing.
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return listenError("-listen", cfg.listen, err, "another syncd running?")
	}
	defer lis.Close() // after Serve, a no-op
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// Before anything in the directory is read or written: a second syncd
	// on it stops here, having changed nothing.
	lock, err := lockDataDir(cfg.data)
	if err != nil {
		return err
	}
	defer lock.unlock()
	if fi, err := os.Stat(cfg.data); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data directory is open to other users: it holds the admin credential and every record; chmod 700 it",
			"dir", cfg.data, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
	}
	tokenFile := cfg.adminTokenFile
	if tokenFile == "" {
		tokenFile = filepath.Join(cfg.data, "admin.token")
	}
	token, created, err := adminToken(tokenFile, log)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "syncd: admin credential created in %s (keep it secret; fieldctl admin reads it)\n", tokenFile)
	}

	var creds []grpc.ServerOption
	if !cfg.plaintext {
		tlsDir := filepath.Join(cfg.data, "tls")
		tlsCfg, fp, err := server.LoadOrCreateTLS(tlsDir, certHosts(lis.Addr(), cfg.tlsHosts))
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		creds = append(creds, grpc.Creds(credentials.NewTLS(tlsCfg)))
		fmt.Fprintf(stdout, "syncd: TLS with CA %s, fingerprint %s (enrollment codes carry it; devices pin it)\n", filepath.Join(tlsDir, server.CAFile), fp)
	} else {
		fmt.Fprintln(stdout, "syncd: plain-text gRPC (-insecure-plaintext): loopback only, for development")
	}

	// Litestream reports each monitor it starts and each compaction at
	// info: below warnings, only when asked for debug.
	backupLevel := max(level, slog.LevelWarn)
	if level < slog.LevelInfo {
		backupLevel = level
	}
	d := &daemon{stdout: stdout, log: log, backupLog: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: backupLevel}))}
	if err := d.start(ctx, cfg, natsHost, natsPort, token); err != nil {
		return errors.Join(err, d.stop())
	}
	d.g = grpc.NewServer(append(d.srv.GRPCOptions(), creds...)...)
	d.srv.Register(d.g)
	serveDone := make(chan error, 1)
	fmt.Fprintf(stdout, "syncd: listening on %s\n", lis.Addr())
	// Nothing is served before this: the kernel may queue connections on lis, but no RPC is answered until the database and NATS are open (start).
	go func() { serveDone <- d.g.Serve(lis) }()

	var serveErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "syncd: stopping: finishing in-flight requests and publishing the changelog")
	case serveErr = <-serveDone:
		if serveErr != nil {
			serveErr = fmt.Errorf("serve gRPC: %w", serveErr)
		}
	}
	if err := errors.Join(serveErr, d.stop()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "syncd: stopped cleanly")
	return nil
}

// daemon holds what run starts; stop ends whatever of it was started.
type daemon struct {
	stdout    io.Writer
	log       *slog.Logger
	backupLog *slog.Logger

	store    *store.Server
	backup   *backup.Backup     // nil with -backup off
	ns       *natsserver.Server // nil with an external NATS
	natsAuth *server.NATSAuth   // nil with an external NATS
	nc       *nats.Conn
	ncClosed chan struct{}
	srv      *server.Server
	g        *grpc.Server

	relayCancel context.CancelFunc
	relayDone   chan error
}

// start opens the database, starts or reaches NATS and starts the relay.
func (d *daemon) start(ctx context.Context, cfg config, natsHost string, natsPort int, adminToken string) error {
	dbPath := filepath.Join(cfg.data, "fieldsync.db")
	backupURL := backupLocation(cfg.data, cfg.backup)
	var stOpts []store.ServerOption
	if backupURL != "" {
		stOpts = append(stOpts, store.ExternalCheckpoints())
	}
	st, err := store.OpenServer(ctx, dbPath, stOpts...)
	if err != nil {
		return fmt.Errorf("open database %s: %w", dbPath, err)
	}
	d.store = st
	if backupURL != "" {
		b, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: backupURL, SyncInterval: cfg.backupInterval,
			Retention: cfg.backupRetention, Logger: d.backupLog.With("component", "backup"), BetweenCommits: st.BetweenCommits})
		if err != nil {
			return fmt.Errorf("%w: fix -backup, or run without a backup with -backup off", err)
		}
		d.backup = b
		where := "a directory on the same disk as the data: it undoes mistakes, not a lost disk; point -backup at another disk or at s3://"
		if !backup.IsLocal(backupURL) {
			where = "off this machine"
		} else if cfg.backup != "" {
			where = "a directory; on another disk it also survives the loss of the data's disk"
		}
		fmt.Fprintf(d.stdout, "syncd: backup to %s every %s, restorable for %s (%s)\n", backup.Redact(backupURL), cfg.backupInterval, cfg.backupRetention, where)
	} else {
		fmt.Fprintln(d.stdout, "syncd: no backup (-backup off): a lost or damaged disk loses the database")
	}

	natsURL := cfg.natsURL
	opts := []nats.Option{
		nats.Name("syncd"),
		// Never give up: the relay resumes from SQLite whenever NATS is back.
		nats.MaxReconnects(-1),
		nats.DrainTimeout(stopTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(d.ncClosed) }),
	}
	d.ncClosed = make(chan struct{})
	if natsURL == "" {
		storeDir := filepath.Join(cfg.data, "nats")
		if natsPort > 0 {
			// nats-server reports a busy port only by never becoming ready;
			// find out now, with a message that says what to do.
			l, err := net.Listen("tcp", net.JoinHostPort(natsHost, strconv.Itoa(natsPort)))
			if err != nil {
				return listenError("-nats-listen", cfg.natsListen, err,
					"another syncd or nats-server running? point -nats at it, or")
			}
			l.Close()
		}
		nopts, auth, err := embeddedNATSAuth(ctx, cfg, st, natsHost, d.stdout)
		if err != nil {
			return err
		}
		d.natsAuth = auth
		ns, err := server.EmbeddedNATS(storeDir, natsHost, natsPort, append(nopts, server.WithJetStreamLimits(int64(cfg.natsMaxStore), 0))...)
		if err != nil {
			return err
		}
		d.ns = ns
		natsURL = ns.ClientURL()
		// In process: no TLS to check even when the listener requires it.
		opts = append(opts, nats.InProcessServer(ns), auth.ConnectOption())
		fmt.Fprintf(d.stdout, "syncd: nats on %s (embedded, JetStream store %s, at most %s)\n", natsURL, storeDir, server.ByteSize(ns.JetStreamConfig().MaxStore))
	} else {
		xopts, err := cfg.nats.clientOptions()
		if err != nil {
			return err
		}
		opts = append(opts, xopts...)
	}
	connectURL := natsURL
	if d.ns != nil {
		connectURL = "" // in process (a tls:// URL would make the client check a certificate)
	}
	nc, err := nats.Connect(connectURL, opts...)
	if err != nil {
		if cfg.natsURL != "" {
			return fmt.Errorf("connect to NATS at %s: %w: is it running? (leave -nats empty to embed one)", redactURLs(natsURL), err)
		}
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	d.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if cfg.natsURL != "" {
		actx, cancel := context.WithTimeout(ctx, stopTimeout)
		_, err := js.AccountInfo(actx)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return fmt.Errorf("NATS at %s has no JetStream for this account: enable it (nats-server -js) or leave -nats empty to embed one", redactURLs(natsURL))
		case err != nil:
			d.log.Warn("JetStream not answering yet; the relay keeps trying", "err", err)
		}
		fmt.Fprintf(d.stdout, "syncd: nats on %s (external)\n", redactURLs(natsURL))
	}
	// fieldctl hq tail reads the URL from here. Written on every start, so
	// that it is never a stale random port.
	if err := os.WriteFile(filepath.Join(cfg.data, "nats.url"), []byte(natsURL), 0o600); err != nil {
		return fmt.Errorf("write nats.url: %w", err)
	}

	d.srv = server.New(server.Config{
		Store:          st,
		JetStream:      js,
		AdminTokenHash: store.HashSecret(adminToken),
		Logger:         d.log,
		DeviceLimit:    cfg.deviceRate.limit(),
		UserLimit:      cfg.userRate.limit(),
		EnrollLimit:    cfg.enrollRate.limit(),
		NATSAuth:       d.natsAuth,
		StreamLimits:   cfg.nats.limits,
	})
	if d.ns != nil {
		d.srv.Relay().SetRecover(server.RecoverJetStream(d.ns, d.log))
	}
	// Check the changelog against the database before serving: a database
	// that went back in time gets its new lineage before any new change.
	cctx, ccancel := context.WithTimeout(ctx, stopTimeout)
	if err := d.srv.Relay().Check(cctx); err != nil {
		d.log.Warn("changelog not checked before serving; the relay keeps trying", "err", err)
	}
	fmt.Fprintf(d.stdout, "syncd: changelog %s\n", server.DescribeStream(d.srv.Relay().StreamSettings()))
	ccancel()
	// The relay outlives ctx: on a signal it must still publish what the
	// last requests committed, so stop cancels it only after that.
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.relayCancel = cancel
	d.relayDone = make(chan error, 1)
	go func() { d.relayDone <- d.srv.RunRelay(relayCtx) }()
	return nil
}

// stop shuts down in the order that loses nothing: no new requests, the
// in-flight ones finished, everything committed published, then the
// database, the NATS connection and the embedded NATS closed.
func (d *daemon) stop() error {
	var errs []error
	if d.srv != nil {
		d.srv.Close() // ends Watch streams, which GracefulStop would wait for
	}
	if d.g != nil {
		stopped := make(chan struct{})
		go func() { d.g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(stopTimeout):
			d.log.Warn("requests still running after the stop timeout; cutting them off", "timeout", stopTimeout)
			d.g.Stop()
			<-stopped
		}
	}
	if d.relayCancel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		last, err := d.store.LastSeq(ctx)
		if err == nil {
			err = d.srv.Relay().WaitPublished(ctx, last)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("relay: %w (nothing is lost: the next start publishes the rest from the database)", err))
		}
		d.relayCancel()
		<-d.relayDone
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
	}
	if d.backup != nil {
		// After the database: its last writes are shipped before syncd exits.
		if err := d.backup.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("%w (the backup lacks the last writes until syncd runs again)", err))
		}
	}
	if d.nc != nil {
		if err := d.nc.Drain(); err != nil {
			d.nc.Close()
		}
		select {
		case <-d.ncClosed:
		case <-time.After(stopTimeout + time.Second):
			d.nc.Close()
		}
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// adminToken reads the admin credential from path, creating a random one
// there (mode 0600) if the file does not exist.
func adminToken(path string, log *slog.Logger) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", false, fmt.Errorf("admin credential file %s is empty: delete it and syncd creates a new one", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("admin credential file is readable by other users; chmod 600 it", "file", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
		}
		return token, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read admin credential: %w", err)
	}
	token = domain.RandomToken(20)
	// O_EXCL: never overwrite a credential another process just wrote.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create admin credential: %w", err)
	}
	_, err = f.WriteString(token)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", false, fmt.Errorf("write admin credential %s: %w", path, err)
	}
	return token, true, nil
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

// listenError turns a listen failure into advice.
func listenError(flagName, addr string, err error, hint string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen %s: address already in use: %s choose another with %s", addr, hint, flagName)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("listen %s: permission denied: ports below 1024 need privileges; choose another with %s", addr, flagName)
	}
	return fmt.Errorf("listen %s (%s): %w", addr, flagName, err)
}

// redactURLs hides credentials (user:password or a bare token) in a
// comma-separated list of NATS URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// certHosts lists what the server certificate must cover: the listen host
// (every local address for an unspecified one), localhost, 127.0.0.1, and
// the -tls-hosts names.
func certHosts(addr net.Addr, extra string) []string {
	hosts := []string{"localhost", "127.0.0.1"}
	if ta, ok := addr.(*net.TCPAddr); ok {
		if ta.IP.IsUnspecified() {
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if ipn, ok := a.(*net.IPNet); ok {
						hosts = append(hosts, ipn.IP.String())
					}
				}
			}
			if name, err := os.Hostname(); err == nil {
				hosts = append(hosts, name)
			}
		} else {
			hosts = append(hosts, ta.IP.String())
		}
	}
	for _, h := range strings.Split(extra, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
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
