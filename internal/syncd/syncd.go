// Package syncd assembles fieldsync's server from its parts: the data
// directory and its lock, the admin credential, the SQLite store, the
// continuous backup, the embedded or external NATS with JetStream, the
// server (package server) with its TLS, the relay to the changelog, and
// (Config.HQListen, hq.go) the HQ read model following the changelog with
// the HQ page on it.
//
// It is the one place that does so. cmd/syncd turns its flags into a
// Config and calls Start; cmd/syncbench and internal/testenv call the same
// Start, so that whatever syncd runs with (the lock, the limits, the
// credentials, the metrics) the benchmark and the tests run with too.
package syncd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
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

// StopTimeout bounds each step of shutdown that waits on others: in-flight
// RPCs, then the relay catching up with the database.
const StopTimeout = 10 * time.Second

// Config is what Start assembles. The zero value of each field is its
// default, except Dir, which is required.
type Config struct {
	// Dir is the data directory: the database fieldsync.db, the embedded
	// NATS store, the TLS files, admin.token, audit.key, nats.url and the
	// lock.
	Dir string

	// Listen is the gRPC address (default 127.0.0.1:0, a free port);
	// Listener, when set, is used instead (already listening).
	Listen   string
	Listener net.Listener

	// Plaintext serves gRPC without TLS; TLSHosts are the names and IPs the
	// server certificate covers besides the listen host, localhost and
	// 127.0.0.1.
	Plaintext bool
	TLSHosts  []string

	// NATSURL names an external NATS with JetStream; empty embeds one
	// storing in <Dir>/nats and listening on NATSHost:NATSPort (default
	// 127.0.0.1 and a free port), its store capped at NATSMaxStore bytes
	// (default server.DefaultNATSMaxStore).
	NATSURL      string
	NATSHost     string
	NATSPort     int
	NATSMaxStore int64
	// NATSOptions are added to the connection to an external NATS (its
	// credentials and TLS). The embedded NATS authenticates every
	// connection: syncd's own NKey (<Dir>/nats-syncd.nk, made on first
	// start) and the HQ credentials in the database; beyond loopback it
	// requires TLS with syncd's CA.
	NATSOptions []nats.Option
	// StreamLimits are the changelog stream's limits; those not marked as
	// set keep an existing stream's own.
	StreamLimits server.StreamLimits
	// StreamReplicas is how many servers of a JetStream cluster keep the
	// changelog stream (1..server.MaxReplicas); 0 keeps an existing
	// stream's and creates a new one with 1 (or StreamLimits.Replicas).
	StreamReplicas int

	// Region is the region this syncd is (domain.CheckRegion; "" for
	// none): the database pins it at first start and refuses another
	// later; the relay publishes stream domain.RegionStream(Region) on
	// subjects domain.RegionSubjectPrefix(Region).>, each change with the
	// header domain.HeaderRegion; the admin import takes only ids that
	// start with domain.RegionIDPrefix(Region); the HQ page follows the
	// region's stream.
	Region string

	// AdminToken is the admin credential; empty reads AdminTokenFile
	// (default <Dir>/admin.token), creating it if missing.
	AdminToken     string
	AdminTokenFile string

	// Backup is where the database is backed up continuously (a directory
	// or a Litestream URL); empty for no backup.
	Backup          string
	BackupInterval  time.Duration // default backup.DefaultSyncInterval
	BackupRetention time.Duration // default backup.DefaultRetention
	BackupLogger    *slog.Logger  // default Logger

	// Server changes the server's configuration (limits, hooks) before the
	// server is made; GRPCOptions are added to the gRPC server's own.
	Server      func(*server.Config)
	GRPCOptions []grpc.ServerOption

	// MetricsListen is the plain-HTTP address serving Prometheus metrics at
	// /metrics and the health at /healthz; empty for none. Reflection
	// serves gRPC server reflection.
	MetricsListen string
	Reflection    bool

	// Logger gets the logs (default: none); Out gets the lines an operator
	// reads at start ("syncd: listening on …"; default: none).
	Logger *slog.Logger
	Out    io.Writer

	// Retention is the window after which gone marks, published changelog
	// rows and kept mutation results are compacted (retention.go; cmd/syncd
	// defaults it to DefaultRetention); 0 compacts nothing. The pass runs
	// at start and every RetentionEvery (default DefaultRetentionEvery);
	// Now is its clock (default time.Now; tests move it on).
	Retention      time.Duration
	RetentionEvery time.Duration
	Now            func() time.Time

	// HQListen is the address of the HQ page (hq.go): syncd then also runs
	// the HQ read model, following the changelog with the durable consumer
	// HQDurableSyncd into <Dir>/hq/model.db, and the page on it (its
	// sign-in codes, sessions and audit in <Dir>/hq/web.db). Empty: neither
	// (the zero value; cmd/syncd defaults it to DefaultHQListen). Beyond
	// loopback the page is HTTPS, with HQTLSCert and HQTLSKey when given,
	// else with syncd's own certificate (<Dir>/tls), which then covers the
	// page's address too; plain HTTP only on loopback. HQApplied is told
	// each change number the read model applies (optional).
	// HQListenIsDefault says HQListen is a default nobody asked for: when
	// its address is in use (another syncd on the machine), syncd starts
	// without the page and says so, rather than not at all.
	HQListen          string
	HQListenIsDefault bool
	HQTLSCert         string
	HQTLSKey          string
	HQApplied         func(seq uint64)
}

// Daemon is a running syncd. Its fields are for the caller to read.
type Daemon struct {
	Store *store.Server
	// Files is the store of attached files' bytes, <Dir>/attachments.db.
	Files  *store.Files
	Server *server.Server
	NATS   *natsserver.Server // nil with an external NATS
	// NATSAuth is the embedded NATS's users (nil with an external NATS).
	NATSAuth *server.NATSAuth
	NC       *nats.Conn
	JS       jetstream.JetStream
	GRPC     *grpc.Server
	Backup   *backup.Backup // nil without a backup
	// FilesBackup is attachments.db's continuous backup, to the sub-path
	// backup.AttachmentsSub of the same location (nil without a backup).
	FilesBackup *backup.Backup
	// HQ is the HQ read model's follower and page (nil without HQListen).
	HQ *HQ

	Addr       string // the gRPC address it listens on
	NATSURL    string // the URL NATS clients use
	AdminToken string
	// CAFingerprint is the pinned CA of the server's TLS ("" in plain text).
	CAFingerprint string

	cfg       Config
	log       *slog.Logger
	out       io.Writer
	lock      *DataLock
	lis       net.Listener
	metrics   *metricsServer // nil without MetricsListen
	ncClosed  chan struct{}
	serveDone chan error

	relayCancel context.CancelFunc
	relayDone   chan error
	retention   *retention // nil without a retention window
	stopped     bool

	hqLis     net.Listener // the HQ page's, until HQ takes it
	hqTLS     *tls.Config  // the HQ page's TLS (nil: plain HTTP on loopback)
	hqOwnCert bool         // hqTLS is syncd's own certificate
}

// Start assembles syncd and serves gRPC until Stop. ctx bounds the start
// only. On error, whatever was started is stopped again.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Logger, out: cfg.Out}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.out == nil {
		d.out = io.Discard
	}
	if err := d.start(ctx); err != nil {
		return nil, errors.Join(err, d.Stop())
	}
	return d, nil
}

func (d *Daemon) start(ctx context.Context) error {
	cfg := d.cfg
	if cfg.Dir == "" {
		return errors.New("syncd: no data directory")
	}
	if err := domain.CheckRegion(cfg.Region); err != nil {
		return fmt.Errorf("Config.Region: %w", err)
	}
	if cfg.StreamReplicas < 0 || cfg.StreamReplicas > server.MaxReplicas {
		return fmt.Errorf("Config.StreamReplicas %d: want 1 to %d (0: keep the stream's own)", cfg.StreamReplicas, server.MaxReplicas)
	}
	// Listen before touching the data directory, so that a second syncd on
	// the same address fails at once and changes nothing.
	d.lis = cfg.Listener
	if d.lis == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return ListenError("-listen", addr, err, "another syncd running?")
		}
		d.lis = lis
	}
	d.Addr = d.lis.Addr().String()
	if err := d.listenHQ(); err != nil {
		return err
	}
	metrics, err := listenMetrics(cfg.MetricsListen)
	if err != nil {
		return err
	}
	d.metrics = metrics
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// Before anything in the directory is read or written: a second syncd
	// on it stops here, having changed nothing.
	lock, err := LockDataDir(cfg.Dir)
	if err != nil {
		return err
	}
	d.lock = lock
	if fi, err := os.Stat(cfg.Dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		d.log.Warn("data directory is open to other users: it holds the admin credential and every record; chmod 700 it",
			"dir", cfg.Dir, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
	}
	d.AdminToken = cfg.AdminToken
	if d.AdminToken == "" {
		tokenFile := cfg.AdminTokenFile
		if tokenFile == "" {
			tokenFile = filepath.Join(cfg.Dir, "admin.token")
		}
		token, created, err := adminToken(tokenFile, d.log)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(d.out, "syncd: admin credential created in %s (keep it secret; fieldctl admin reads it)\n", tokenFile)
		}
		d.AdminToken = token
	}

	var creds []grpc.ServerOption
	hosts := certHosts(d.lis.Addr(), cfg.TLSHosts)
	if d.hqOwnCert {
		// One certificate for gRPC and the page: it covers both addresses.
		hosts = append(hosts, certHosts(d.hqLis.Addr(), nil)...)
		slices.Sort(hosts)
		hosts = slices.Compact(hosts)
	}
	if d.hqOwnCert && cfg.Plaintext {
		tlsCfg, _, err := server.LoadOrCreateTLS(filepath.Join(cfg.Dir, "tls"), hosts)
		if err != nil {
			return fmt.Errorf("TLS for the HQ page: %w", err)
		}
		d.hqTLS = tlsCfg.Clone()
	}
	if !cfg.Plaintext {
		tlsDir := filepath.Join(cfg.Dir, "tls")
		tlsCfg, fp, err := server.LoadOrCreateTLS(tlsDir, hosts)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		if d.hqOwnCert {
			d.hqTLS = tlsCfg.Clone()
		}
		d.CAFingerprint = fp
		creds = append(creds, grpc.Creds(credentials.NewTLS(tlsCfg)))
		fmt.Fprintf(d.out, "syncd: TLS with CA %s, fingerprint %s (enrollment codes carry it; devices pin it)\n", filepath.Join(tlsDir, server.CAFile), fp)
	} else {
		fmt.Fprintln(d.out, "syncd: plain-text gRPC (-insecure-plaintext): loopback only, for development")
	}

	if err := d.openStore(ctx); err != nil {
		return err
	}
	if err := d.connectNATS(ctx); err != nil {
		return err
	}

	limits := cfg.StreamLimits
	if cfg.StreamReplicas > 0 {
		limits.Replicas, limits.SetReplicas = cfg.StreamReplicas, true
	}
	if cfg.Region != "" {
		fmt.Fprintf(d.out, "syncd: region %s: changelog stream %s on subjects %s.>, header %s; the import takes only ids starting with %q\n",
			cfg.Region, domain.RegionStream(cfg.Region), domain.RegionSubjectPrefix(cfg.Region), domain.HeaderRegion, domain.RegionIDPrefix(cfg.Region))
	}
	scfg := server.Config{
		Store:          d.Store,
		Region:         cfg.Region,
		Files:          d.Files,
		JetStream:      d.JS,
		AdminTokenHash: store.HashSecret(d.AdminToken),
		Logger:         d.log,
		Metrics:        d.metrics.metricsOf(),
		Reflection:     cfg.Reflection,
		NATSAuth:       d.NATSAuth,
		StreamLimits:   limits,
	}
	if cfg.Server != nil {
		cfg.Server(&scfg)
	}
	d.Server = server.New(scfg)
	if d.NATS != nil {
		d.Server.Relay().SetRecover(server.RecoverJetStream(d.NATS, d.log))
	}
	// Check the changelog against the database before serving: a database
	// that went back in time gets its new lineage before any new change.
	// If it cannot (an external NATS down, a damaged store), the relay's
	// first round checks again.
	cctx, ccancel := context.WithTimeout(ctx, StopTimeout)
	err = d.Server.Relay().Check(cctx)
	ccancel()
	if err != nil {
		d.log.Warn("changelog not checked before serving; the relay keeps trying", "err", err)
	}
	fmt.Fprintf(d.out, "syncd: changelog %s\n", server.DescribeStream(d.Server.Relay().StreamSettings()))
	// The relay outlives ctx: on a signal it must still publish what the
	// last requests committed, so Stop cancels it only after that.
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.relayCancel = cancel
	d.relayDone = make(chan error, 1)
	go func() { d.relayDone <- d.Server.RunRelay(relayCtx) }()
	d.startRetention()

	d.GRPC = grpc.NewServer(append(append(d.Server.GRPCOptions(), creds...), cfg.GRPCOptions...)...)
	d.Server.Register(d.GRPC)
	d.metrics.serve(d.Server, d.out)
	if err := d.startHQ(ctx); err != nil {
		return err
	}
	d.serveDone = make(chan error, 1)
	fmt.Fprintf(d.out, "syncd: listening on %s\n", d.Addr)
	// Nothing is served before this: the kernel may queue connections on
	// the listener, but no RPC is answered until the database and NATS are
	// open.
	go func() { d.serveDone <- d.GRPC.Serve(d.lis) }()
	return nil
}

// openStore opens the database and starts its backup.
func (d *Daemon) openStore(ctx context.Context) error {
	cfg := d.cfg
	dbPath := filepath.Join(cfg.Dir, "fieldsync.db")
	var stOpts []store.ServerOption
	if cfg.Backup != "" {
		stOpts = append(stOpts, store.ExternalCheckpoints())
	}
	// The audit log's MAC key lives beside the database, not in it.
	keyPath := filepath.Join(cfg.Dir, "audit.key")
	auditKey, created, err := store.LoadOrCreateAuditKey(keyPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(d.out, "syncd: created the audit log's key %s: back it up apart from the database\n", keyPath)
	}
	stOpts = append(stOpts, store.WithAuditKey(auditKey), store.WithRegion(cfg.Region))
	st, err := store.OpenServer(ctx, dbPath, stOpts...)
	if err != nil {
		return fmt.Errorf("open database %s: %w", dbPath, err)
	}
	d.Store = st
	// Attached files' bytes live in a database of their own beside it, so
	// that the records' writer never waits on them.
	filesPath := filepath.Join(cfg.Dir, "attachments.db")
	var fileOpts []store.FilesOption
	if cfg.Backup != "" {
		fileOpts = append(fileOpts, store.FilesExternalCheckpoints())
	}
	files, err := store.OpenFiles(ctx, filesPath, fileOpts...)
	if err != nil {
		return fmt.Errorf("open file store %s: %w", filesPath, err)
	}
	d.Files = files
	if cfg.Backup == "" {
		fmt.Fprintln(d.out, "syncd: no backup (-backup off): a lost or damaged disk loses the database")
		return nil
	}
	interval, retention := cfg.BackupInterval, cfg.BackupRetention
	if interval <= 0 {
		interval = backup.DefaultSyncInterval
	}
	if retention <= 0 {
		retention = backup.DefaultRetention
	}
	blog := cfg.BackupLogger
	if blog == nil {
		blog = d.log
	}
	b, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: cfg.Backup, SyncInterval: interval,
		Retention: retention, Logger: blog.With("component", "backup"), BetweenCommits: st.BetweenCommits})
	if err != nil {
		return fmt.Errorf("%w: fix -backup, or run without a backup with -backup off", err)
	}
	d.Backup = b
	// The files' database to the same location's attachments/: one
	// -backup holds both, and syncd restore brings both back.
	fb, err := backup.Start(ctx, backup.Config{DBPath: filesPath, URL: cfg.Backup, Sub: backup.AttachmentsSub, SyncInterval: interval,
		Retention: retention, Logger: blog.With("component", "backup", "db", "attachments.db"), BetweenCommits: d.Files.BetweenCommits})
	if err != nil {
		return fmt.Errorf("%w (attachments.db): fix -backup, or run without a backup with -backup off", err)
	}
	d.FilesBackup = fb
	where := "a directory on the same disk as the data: it undoes mistakes, not a lost disk; point -backup at another disk or at s3://"
	if !backup.IsLocal(cfg.Backup) {
		where = "off this machine"
	} else if filepath.Clean(cfg.Backup) != filepath.Join(cfg.Dir, "backup") {
		where = "a directory; on another disk it also survives the loss of the data's disk"
	}
	fmt.Fprintf(d.out, "syncd: backup to %s every %s, restorable for %s (%s); attached files (attachments.db) to its %s/\n", backup.Redact(cfg.Backup), interval, retention, where, backup.AttachmentsSub)
	return nil
}

// connectNATS starts the embedded NATS or reaches the external one, and
// writes the URL clients use to <Dir>/nats.url.
func (d *Daemon) connectNATS(ctx context.Context) error {
	cfg := d.cfg
	natsURL := cfg.NATSURL
	d.ncClosed = make(chan struct{})
	opts := []nats.Option{
		nats.Name("syncd"),
		// Never give up: the relay resumes from SQLite whenever NATS is back.
		nats.MaxReconnects(-1),
		nats.DrainTimeout(StopTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(d.ncClosed) }),
	}
	if natsURL == "" {
		storeDir := filepath.Join(cfg.Dir, "nats")
		host, port := cfg.NATSHost, cfg.NATSPort
		if host == "" {
			host = "127.0.0.1"
		}
		if port == 0 {
			port = natsserver.RANDOM_PORT
		}
		if port > 0 {
			// nats-server reports a busy port only by never becoming ready;
			// find out now, with a message that says what to do.
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return ListenError("-nats-listen", addr, err,
					"another syncd or nats-server running? point -nats at it, or")
			}
			l.Close()
		}
		nopts, auth, err := d.embeddedNATSAuth(ctx, host)
		if err != nil {
			return err
		}
		d.NATSAuth = auth
		ns, err := server.EmbeddedNATS(storeDir, host, port, append(nopts, server.WithJetStreamLimits(cfg.NATSMaxStore, 0))...)
		if err != nil {
			return err
		}
		d.NATS = ns
		server.LogNATSRefusals(ns, d.log)
		natsURL = ns.ClientURL()
		// In process: no TLS to check even when the listener requires it.
		opts = append(opts, nats.InProcessServer(ns), auth.ConnectOption())
		fmt.Fprintf(d.out, "syncd: nats on %s (embedded, JetStream store %s, at most %s)\n", natsURL, storeDir, server.ByteSize(ns.JetStreamConfig().MaxStore))
	}
	connectURL := natsURL
	if d.NATS != nil {
		connectURL = "" // in process (a tls:// URL would make the client check a certificate)
	} else {
		opts = append(opts, cfg.NATSOptions...)
	}
	nc, err := nats.Connect(connectURL, opts...)
	if err != nil {
		close(d.ncClosed) // never connected: nothing to wait for
		if cfg.NATSURL != "" {
			return fmt.Errorf("connect to NATS at %s: %w: is it running? (leave -nats empty to embed one)", RedactURLs(natsURL), err)
		}
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	d.NC = nc
	d.NATSURL = natsURL
	if d.JS, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if cfg.NATSURL != "" {
		actx, cancel := context.WithTimeout(ctx, StopTimeout)
		_, err := d.JS.AccountInfo(actx)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return fmt.Errorf("NATS at %s has no JetStream for this account: enable it (nats-server -js) or leave -nats empty to embed one", RedactURLs(natsURL))
		case err != nil:
			d.log.Warn("JetStream not answering yet; the relay keeps trying", "err", err)
		}
		fmt.Fprintf(d.out, "syncd: nats on %s (external)\n", RedactURLs(natsURL))
	}
	// fieldctl hq tail reads the URL from here. Written on every start, so
	// that it is never a stale random port.
	if err := os.WriteFile(filepath.Join(cfg.Dir, "nats.url"), []byte(natsURL), 0o600); err != nil {
		return fmt.Errorf("write nats.url: %w", err)
	}
	return nil
}

// embeddedNATSAuth is the embedded NATS's authentication: syncd's own
// NKey (made on first start in <Dir>/nats-syncd.nk, which an operator may
// use with natscli), the HQ credentials from the database, and TLS with
// syncd's CA when it listens beyond loopback.
func (d *Daemon) embeddedNATSAuth(ctx context.Context, natsHost string) ([]server.NATSOption, *server.NATSAuth, error) {
	seedFile := filepath.Join(d.cfg.Dir, "nats-syncd.nk")
	kp, created, err := server.LoadOrCreateNKey(seedFile)
	if err != nil {
		return nil, nil, fmt.Errorf("syncd's NATS key: %w", err)
	}
	if created {
		fmt.Fprintf(d.out, "syncd: NATS key created in %s (syncd's own NATS user, every right: keep it secret)\n", seedFile)
	}
	hq, err := server.HQUsers(ctx, d.Store)
	if err != nil {
		return nil, nil, fmt.Errorf("read HQ credentials: %w", err)
	}
	auth := server.NewNATSAuth(kp, hq)
	auth.SetRegion(d.cfg.Region)
	opts := []server.NATSOption{server.WithAuth(auth)}
	if ip := net.ParseIP(natsHost); natsHost != "localhost" && (ip == nil || !ip.IsLoopback()) {
		tlsDir := filepath.Join(d.cfg.Dir, "tls")
		tlsCfg, err := server.LoadOrCreateNATSTLS(tlsDir, certHosts(&net.TCPAddr{IP: ip}, append(slices.Clone(d.cfg.TLSHosts), natsHost)))
		if err != nil {
			return nil, nil, fmt.Errorf("NATS TLS: %w", err)
		}
		opts = append(opts, server.WithTLS(tlsCfg))
		fmt.Fprintf(d.out, "syncd: nats requires TLS on %s (certificate from CA %s: clients pass it, e.g. nats --tlsca, fieldctl hq tail -nats-ca)\n", natsHost, filepath.Join(tlsDir, server.CAFile))
	}
	fmt.Fprintf(d.out, "syncd: nats authenticates every connection: %d HQ credential(s) (fieldctl admin hq-credential)\n", len(hq))
	return opts, auth, nil
}

// Serving is closed, after its error is sent, when gRPC stops serving
// before Stop (a listener that failed).
func (d *Daemon) Serving() <-chan error { return d.serveDone }

// Stop shuts down in the order that loses nothing: no new requests, the
// in-flight ones finished, everything committed published, then the
// database, its backup, the NATS connection, the embedded NATS and the
// lock. It may be called again; later calls do nothing.
func (d *Daemon) Stop() error {
	if d.stopped {
		return nil
	}
	d.stopped = true
	var errs []error
	if d.HQ != nil {
		// The page first (no new requests), then its follower, all before
		// NATS: the follower's last acks still reach it.
		if err := d.HQ.Stop(); err != nil {
			errs = append(errs, err)
		}
	} else if d.hqLis != nil {
		d.hqLis.Close()
	}
	if d.Server != nil {
		d.Server.Close() // ends Watch streams, which GracefulStop would wait for
	}
	if d.GRPC != nil {
		stopped := make(chan struct{})
		go func() { d.GRPC.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(StopTimeout):
			d.log.Warn("requests still running after the stop timeout; cutting them off", "timeout", StopTimeout)
			d.GRPC.Stop()
			<-stopped
		}
	} else if d.lis != nil {
		d.lis.Close()
	}
	if d.retention != nil {
		d.retention.stop() // before the store closes; a pass stops between jobs
	}
	if d.relayCancel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		last, err := d.Store.LastSeq(ctx)
		if err == nil {
			err = d.Server.Relay().WaitPublished(ctx, last)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("relay: %w (nothing is lost: the next start publishes the rest from the database)", err))
		}
		d.relayCancel()
		<-d.relayDone
	}
	if d.Store != nil {
		if err := d.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
	}
	if d.Files != nil {
		if err := d.Files.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close file store: %w", err))
		}
	}
	if d.Backup != nil {
		// After the database: its last writes are shipped before syncd exits.
		if err := d.Backup.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("%w (the backup lacks the last writes until syncd runs again)", err))
		}
	}
	if d.FilesBackup != nil {
		if err := d.FilesBackup.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("%w (the backup lacks the last files until syncd runs again)", err))
		}
	}
	if d.NC != nil {
		if err := d.NC.Drain(); err != nil {
			d.NC.Close()
		}
		select {
		case <-d.ncClosed:
		case <-time.After(StopTimeout + time.Second):
			d.NC.Close()
		}
	}
	if d.NATS != nil {
		d.NATS.Shutdown()
		d.NATS.WaitForShutdown()
	}
	// Last: a scrape or health probe during the stop still answers.
	d.metrics.close()
	if d.lock != nil {
		if err := d.lock.Unlock(); err != nil {
			errs = append(errs, fmt.Errorf("unlock data directory: %w", err))
		}
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

// ListenError turns a listen failure into advice naming the flag.
func ListenError(flagName, addr string, err error, hint string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen %s: address already in use: %s choose another with %s", addr, hint, flagName)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("listen %s: permission denied: ports below 1024 need privileges; choose another with %s", addr, flagName)
	}
	return fmt.Errorf("listen %s (%s): %w", addr, flagName, err)
}

// RedactURLs hides credentials (user:password or a bare token) in a
// comma-separated list of NATS URLs.
func RedactURLs(urls string) string {
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
// the extra names.
func certHosts(addr net.Addr, extra []string) []string {
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
	for _, h := range extra {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}
