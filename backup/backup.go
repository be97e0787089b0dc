// Package backup keeps a continuous copy of syncd's database somewhere else
// and restores it to a point in time.
//
// It wraps Litestream (github.com/benbjohnson/litestream) used as a
// library: Litestream follows SQLite's write-ahead log, ships each committed
// transaction as an immutable LTX file to a directory, S3-compatible storage
// or a NATS object store, and compacts them into snapshots, so that a
// restore can stop at any moment it still holds. It is the field's standard
// for SQLite replication, uses the same pure-Go SQLite driver as the store,
// and handles what our own WAL shipping would have to get right again (WAL
// restarts by checkpoints, the 1 GiB lock page, partial uploads, retention).
//
// Litestream needs two things from the application: WAL mode (the store's
// default) and to leave checkpoints to it (store.ExternalCheckpoints), since
// it checkpoints only what it has copied. What it guarantees: every
// transaction committed before a sync point (Backup.Sync, or each
// Config.SyncInterval in the background) is in the backup. Writes after the
// last sync point are the replication lag: at most about one SyncInterval
// while the destination answers.
package backup

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/benbjohnson/litestream/file"
	"github.com/benbjohnson/litestream/nats" // registers nats:// destinations
	"github.com/benbjohnson/litestream/s3"   // registers s3:// destinations
	"github.com/superfly/ltx"
	_ "modernc.org/sqlite" // the "sqlite" driver, for the integrity check
)

// Defaults for Config.
const (
	DefaultSyncInterval = time.Second
	DefaultRetention    = 72 * time.Hour
)

// Config says what to back up where.
type Config struct {
	// DBPath is the SQLite database (in WAL mode) to copy.
	DBPath string
	// URL is where the copy goes: a directory (a path, or file:///path),
	// s3://bucket/path (credentials from AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY or the usual AWS chain; ?endpoint=host for other
	// S3-compatible storage), or nats://host:port/bucket (a JetStream
	// object store).
	URL string
	// SyncInterval is how often committed transactions are read from the WAL
	// and shipped: the replication lag. Default DefaultSyncInterval.
	SyncInterval time.Duration
	// Retention is how far back a point-in-time restore can go; older
	// snapshots and changes are deleted. Default DefaultRetention.
	Retention time.Duration
	// Logger receives Litestream's log; nil is slog.Default().
	Logger *slog.Logger
	// BetweenCommits, if set, runs a function while the application's
	// single writer waits between two transactions (store's
	// Server.BetweenCommits). The backup checkpoints the WAL through it
	// every CheckpointEvery while there are writes: Litestream's own
	// checkpoints wait for the write lock, which a writer committing
	// without pause never leaves free, and the WAL would grow for as long.
	BetweenCommits func(ctx context.Context, fn func()) error
	// CheckpointEvery is how often BetweenCommits is used. Default 1 s:
	// under a writer committing 500-visit batches without pause, the WAL
	// then peaked at 78 MB, against 830 MB at 10 s and without bound with
	// Litestream's checkpoints alone (BENCHMARKS.md).
	CheckpointEvery time.Duration
	// Sub is a sub-path under URL where this database's copy goes (""
	// for URL itself): syncd backs up fieldsync.db to URL and its files'
	// database attachments.db to URL's AttachmentsSub, so that one
	// -backup location holds both (see SubClient).
	Sub string
}

// AttachmentsSub is the sub-path of a backup location that holds the copy
// of syncd's attachments.db (the files attached to records), beside the
// main database's copy at the location itself.
const AttachmentsSub = "attachments"

// Backup is a running continuous backup of one database.
type Backup struct {
	cfg   Config
	db    *litestream.DB
	store *litestream.Store

	stopCheckpoints context.CancelFunc
	checkpointsDone chan struct{}
}

// Client returns the Litestream client for a backup location (see
// Config.URL).
func Client(backupURL string) (litestream.ReplicaClient, error) {
	if backupURL == "" {
		return nil, errors.New("no backup location given")
	}
	if !litestream.IsURL(backupURL) {
		abs, err := filepath.Abs(backupURL)
		if err != nil {
			return nil, fmt.Errorf("backup directory %q: %w", backupURL, err)
		}
		return file.NewReplicaClient(abs), nil
	}
	c, err := litestream.NewReplicaClientFromURL(backupURL)
	if err != nil {
		return nil, fmt.Errorf("backup location %s: %w (want a directory, s3://bucket/path or nats://host:port/bucket)", Redact(backupURL), err)
	}
	return c, nil
}

// SubClient returns the Litestream client for the sub-path sub of a
// backup location: a sub-directory of a directory, a deeper prefix in an
// S3 bucket or a NATS object store. sub "" is Client.
func SubClient(backupURL, sub string) (litestream.ReplicaClient, error) {
	if sub == "" {
		return Client(backupURL)
	}
	if !litestream.IsURL(backupURL) {
		abs, err := filepath.Abs(backupURL)
		if err != nil {
			return nil, fmt.Errorf("backup directory %q: %w", backupURL, err)
		}
		return file.NewReplicaClient(filepath.Join(abs, sub)), nil
	}
	c, err := Client(backupURL)
	if err != nil {
		return nil, err
	}
	switch c := c.(type) {
	case *file.ReplicaClient:
		return file.NewReplicaClient(filepath.Join(c.Path(), sub)), nil
	case *s3.ReplicaClient:
		c.Path = path.Join(c.Path, sub)
	case *nats.ReplicaClient:
		c.Path = path.Join(c.Path, sub)
	default:
		return nil, fmt.Errorf("backup location %s: a %s location cannot hold a second database under %q; use a directory, s3:// or nats://", Redact(backupURL), c.Type(), sub)
	}
	return c, nil
}

// IsLocal says whether a backup location is a directory on this machine.
func IsLocal(backupURL string) bool {
	return !litestream.IsURL(backupURL) || strings.HasPrefix(backupURL, "file:")
}

// Redact hides a password in a backup URL, for messages.
func Redact(backupURL string) string {
	u, err := url.Parse(backupURL)
	if err != nil || u.User == nil {
		return backupURL
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// Start begins copying cfg.DBPath to cfg.URL in the background. The
// database should already exist (Litestream waits for it otherwise); open
// it with store.ExternalCheckpoints. Close stops the copy after a last sync.
func Start(ctx context.Context, cfg Config) (*Backup, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client, err := SubClient(cfg.URL, cfg.Sub)
	if err != nil {
		return nil, err
	}
	db := litestream.NewDB(cfg.DBPath)
	// How often the WAL is read into LTX files, and how often those are
	// shipped: together, the replication lag.
	db.MonitorInterval = cfg.SyncInterval
	// Litestream writes to the database only to set itself up and to seal
	// the WAL for a checkpoint. Under a steady stream of group commits its
	// default 1 s wait for the write lock was seen to fail (and a failed
	// set-up backs off, delaying the backup); the store's writer waits 10 s.
	db.BusyTimeout = 5 * time.Second
	r := litestream.NewReplicaWithClient(db, client)
	r.SyncInterval = cfg.SyncInterval
	db.Replica = r
	if fc, ok := client.(*file.ReplicaClient); ok {
		fc.Replica = r
	}
	st := litestream.NewStore([]*litestream.DB{db}, litestream.DefaultCompactionLevels)
	// A snapshot a day, kept for the retention: a point-in-time restore
	// starts from the last snapshot before the point and applies the
	// compacted changes after it.
	st.SnapshotInterval = 24 * time.Hour
	st.SnapshotRetention = cfg.Retention
	st.Logger = cfg.Logger
	db.SetLogger(cfg.Logger.With("db", filepath.Base(cfg.DBPath)))
	if err := st.Open(ctx); err != nil {
		return nil, fmt.Errorf("start backup to %s: %w", Redact(cfg.URL), err)
	}
	// Litestream sets itself up in the database (two tables, a read
	// transaction) on its first sync, which needs the write lock: done here,
	// before the caller starts writing, since a writer that commits without
	// pause (a sync storm) leaves it no gap. Local only: shipping follows in
	// the background.
	if _, err := os.Stat(cfg.DBPath); err == nil {
		if err := db.Sync(ctx); err != nil {
			st.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("start backup of %s: %w", cfg.DBPath, err)
		}
	}
	b := &Backup{cfg: cfg, db: db, store: st, checkpointsDone: make(chan struct{})}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stopCheckpoints = cancel
	go b.checkpoints(cctx)
	return b, nil
}

// checkpoints checkpoints the WAL between two of the application's
// commits every CheckpointEvery, if it was written to since the last time.
func (b *Backup) checkpoints(ctx context.Context) {
	defer close(b.checkpointsDone)
	if b.cfg.BetweenCommits == nil {
		return
	}
	every := b.cfg.CheckpointEvery
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last time.Time // the WAL's modification time after the last checkpoint
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(b.db.WALPath())
		if err != nil || fi.ModTime().Equal(last) {
			continue
		}
		var cerr error
		if err := b.cfg.BetweenCommits(ctx, func() { cerr = b.db.Checkpoint(ctx, litestream.CheckpointModePassive) }); err != nil {
			continue // closing
		}
		if cerr != nil && ctx.Err() == nil {
			b.cfg.Logger.Warn("checkpoint between commits failed; Litestream's own checkpoints go on", "err", cerr)
			continue
		}
		// The checkpoint itself writes to the WAL: what it leaves is no
		// reason for another.
		if fi, err := os.Stat(b.db.WALPath()); err == nil {
			last = fi.ModTime()
		}
	}
}

// Sync ships everything committed so far and returns once the backup holds
// it: a sync point.
func (b *Backup) Sync(ctx context.Context) error {
	if err := b.db.SyncAndWait(ctx); err != nil {
		return fmt.Errorf("backup sync to %s: %w", Redact(b.cfg.URL), err)
	}
	return nil
}

// Status is how far the backup is.
type Status struct {
	LocalTXID  uint64    // the last transaction Litestream read from the WAL
	RemoteTXID uint64    // the last transaction the backup holds
	LastSync   time.Time // when the backup last received something (zero: not yet)
}

// Status reads the backup's position (asking the destination).
func (b *Backup) Status(ctx context.Context) (Status, error) {
	s, err := b.db.SyncStatus(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("backup status: %w", err)
	}
	return Status{LocalTXID: uint64(s.LocalTXID), RemoteTXID: uint64(s.RemoteTXID), LastSync: b.db.LastSuccessfulSyncAt()}, nil
}

// Close ships what is left (retrying for up to 30 s) and stops.
func (b *Backup) Close(ctx context.Context) error {
	b.stopCheckpoints()
	<-b.checkpointsDone
	if err := b.store.Close(ctx); err != nil {
		return fmt.Errorf("stop backup to %s: %w", Redact(b.cfg.URL), err)
	}
	return nil
}

// Point is a moment a backup can be restored to.
type Point struct {
	TXID uint64    // Litestream's transaction number
	Time time.Time // when the backup read that transaction from the WAL (ms)
	// Committed, for a restore to a timestamp, is a moment every change of
	// the point was committed before: the end of the millisecond in which
	// the backup read the next transaction (see latestBefore). Zero for the
	// latest point.
	Committed time.Time
}

// ErrNoBackup says that the location holds no backup (or none old enough
// for the timestamp asked for).
var ErrNoBackup = errors.New("no backup found")

// Latest finds the point a restore to timestamp (zero: the latest) would
// reach.
func Latest(ctx context.Context, backupURL string, timestamp time.Time) (Point, error) {
	return LatestSub(ctx, backupURL, "", timestamp)
}

// LatestSub is Latest for the database backed up to the sub-path sub of
// the location (Config.Sub).
func LatestSub(ctx context.Context, backupURL, sub string, timestamp time.Time) (Point, error) {
	client, err := SubClient(backupURL, sub)
	if err != nil {
		return Point{}, err
	}
	if err := client.Init(ctx); err != nil {
		return Point{}, fmt.Errorf("open backup %s: %w", Redact(backupURL), err)
	}
	return latest(ctx, client, backupURL, timestamp)
}

func latest(ctx context.Context, client litestream.ReplicaClient, backupURL string, timestamp time.Time) (Point, error) {
	if !timestamp.IsZero() {
		return latestBefore(ctx, client, backupURL, timestamp)
	}
	infos, err := litestream.CalcRestorePlan(ctx, client, 0, time.Time{}, slog.New(slog.DiscardHandler))
	if errors.Is(err, litestream.ErrTxNotAvailable) || errors.Is(err, litestream.ErrNoSnapshots) || (err == nil && len(infos) == 0) {
		return Point{}, noBackup(backupURL, timestamp)
	}
	if err != nil {
		return Point{}, fmt.Errorf("read backup %s: %w", Redact(backupURL), err)
	}
	last := infos[len(infos)-1]
	// The plan's files may be compacted ones: the last L0 file up to the
	// plan's end says when its last transaction was read.
	at := last.CreatedAt
	if itr, err := client.LTXFiles(ctx, 0, 0, false); err == nil {
		for itr.Next() {
			if it := itr.Item(); it.MaxTXID == last.MaxTXID {
				at = it.CreatedAt
			}
		}
		itr.Close()
	}
	return Point{TXID: uint64(last.MaxTXID), Time: at}, nil
}

// latestBefore finds the last point whose changes were all committed by
// timestamp.
//
// Litestream stamps each transaction file with the time it read the
// transaction from the WAL (a compacted file, with that of its last
// transaction), and its own restore to a timestamp takes every file stamped
// before it. But it reads WAL frames as soon as SQLite has written them,
// and SQLite makes a commit visible (and the writer acknowledges it) only
// after it has synced the WAL (synchronous=FULL): under load that sync
// takes tens of milliseconds or more, and a file stamped before T can hold
// a commit completed after T (syncd restore -timestamp once brought back
// changes the server had not yet committed at the moment asked for).
//
// What the files do prove: SQLite has one writer at a time, so a
// transaction's frames are written only once every earlier commit is
// complete. Every change up to transaction N was therefore committed by
// the time the backup read any later transaction: before the end of the
// millisecond of the earliest stamp of a file starting after N (stamps are
// whole milliseconds, rounded down). The point chosen is the last one so
// proven by timestamp; the backup's last transaction is proven by nothing and is
// left to a restore without timestamp. syncd writes often enough for this
// to cost little: the backup checkpoints the WAL about a second after the
// last write (Config.CheckpointEvery), itself a transaction.
func latestBefore(ctx context.Context, client litestream.ReplicaClient, backupURL string, timestamp time.Time) (Point, error) {
	var files []*ltx.FileInfo // levels 0 to 8: transactions in order
	var points []*ltx.FileInfo
	for level := 0; level <= litestream.SnapshotLevel; level++ {
		itr, err := client.LTXFiles(ctx, level, 0, true)
		if err != nil {
			return Point{}, fmt.Errorf("read backup %s: %w", Redact(backupURL), err)
		}
		for itr.Next() {
			it := *itr.Item()
			points = append(points, &it)
			if level < litestream.SnapshotLevel {
				files = append(files, &it)
			}
		}
		if err := itr.Close(); err != nil {
			return Point{}, fmt.Errorf("read backup %s: %w", Redact(backupURL), err)
		}
	}
	// committedBy[i]: the earliest stamp of files[i:], sorted by first
	// transaction.
	slices.SortFunc(files, func(a, b *ltx.FileInfo) int { return cmp.Compare(a.MinTXID, b.MinTXID) })
	committedBy := make([]time.Time, len(files))
	for i := len(files) - 1; i >= 0; i-- {
		committedBy[i] = files[i].CreatedAt
		if i+1 < len(files) && committedBy[i+1].Before(committedBy[i]) {
			committedBy[i] = committedBy[i+1]
		}
	}
	proof := func(txid ltx.TXID) (time.Time, bool) {
		i, _ := slices.BinarySearchFunc(files, txid+1, func(f *ltx.FileInfo, t ltx.TXID) int { return cmp.Compare(f.MinTXID, t) })
		if i == len(files) {
			return time.Time{}, false
		}
		return committedBy[i], true
	}
	// The candidate ends: every file's last transaction (and for each, the
	// time the backup read it: the latest stamp among files ending there).
	slices.SortFunc(points, func(a, b *ltx.FileInfo) int {
		return cmp.Or(cmp.Compare(b.MaxTXID, a.MaxTXID), a.CreatedAt.Compare(b.CreatedAt))
	})
	tried := map[ltx.TXID]bool{}
	for _, p := range points {
		if tried[p.MaxTXID] {
			continue
		}
		tried[p.MaxTXID] = true
		by, ok := proof(p.MaxTXID)
		by = by.Add(time.Millisecond)
		if !ok || by.After(timestamp) {
			continue
		}
		// Reachable from a snapshot through contiguous files?
		infos, err := litestream.CalcRestorePlan(ctx, client, p.MaxTXID, time.Time{}, slog.New(slog.DiscardHandler))
		if errors.Is(err, litestream.ErrTxNotAvailable) || errors.Is(err, litestream.ErrNoSnapshots) || (err == nil && len(infos) == 0) {
			continue
		}
		if err != nil {
			return Point{}, fmt.Errorf("read backup %s: %w", Redact(backupURL), err)
		}
		at := p.CreatedAt
		for _, f := range files {
			if f.Level == 0 && f.MaxTXID == p.MaxTXID {
				at = f.CreatedAt
			}
		}
		return Point{TXID: uint64(p.MaxTXID), Time: at, Committed: by}, nil
	}
	return Point{}, noBackup(backupURL, timestamp)
}

func noBackup(backupURL string, timestamp time.Time) error {
	if timestamp.IsZero() {
		return fmt.Errorf("%w: %s holds no backup of the database (is it the location syncd -backup named?)", ErrNoBackup, Redact(backupURL))
	}
	return fmt.Errorf("%w: %s holds nothing as old as %s (a backup reaches back as far as its retention, syncd -backup-retention, or to when it began; and a transaction counts only once the backup has read a later one, which shows it committed)", ErrNoBackup, Redact(backupURL), timestamp.Format(time.RFC3339Nano))
}

// Restore writes the database as it was at timestamp (zero: the latest the
// backup holds) to dbPath, which must not exist, and returns the point
// reached. It checks nothing inside the result: see IntegrityCheck.
func Restore(ctx context.Context, backupURL, dbPath string, timestamp time.Time) (Point, error) {
	return RestoreSub(ctx, backupURL, "", dbPath, timestamp)
}

// RestoreSub is Restore for the database backed up to the sub-path sub of
// the location (Config.Sub).
func RestoreSub(ctx context.Context, backupURL, sub, dbPath string, timestamp time.Time) (Point, error) {
	client, err := SubClient(backupURL, sub)
	if err != nil {
		return Point{}, err
	}
	if err := client.Init(ctx); err != nil {
		return Point{}, fmt.Errorf("open backup %s: %w", Redact(backupURL), err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		return Point{}, fmt.Errorf("restore to %s: it exists; move it away first", dbPath)
	}
	p, err := latest(ctx, client, backupURL, timestamp)
	if err != nil {
		return Point{}, err
	}
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = dbPath
	// The point found above, not the timestamp again: what is reported is
	// what is restored, even if the backup moves on meanwhile.
	opt.TXID = ltx.TXID(p.TXID)
	r := litestream.NewReplicaWithClient(nil, client)
	if err := r.Restore(ctx, opt); err != nil {
		if errors.Is(err, litestream.ErrTxNotAvailable) {
			return Point{}, noBackup(backupURL, timestamp)
		}
		return Point{}, fmt.Errorf("restore %s from %s: %w", dbPath, Redact(backupURL), err)
	}
	return p, nil
}

// IntegrityCheck runs SQLite's PRAGMA integrity_check on the database at
// path and returns an error listing what it found wrong.
func IntegrityCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check of %s: %w", path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("integrity check of %s: %w", path, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check of %s: %w", path, err)
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
		}
		return fmt.Errorf("integrity check of %s failed: %s", path, strings.Join(problems, "; "))
	}
	return nil
}
