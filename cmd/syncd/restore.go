package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/internal/cliflags"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/store"
)

const restoreUsage = `Usage: syncd restore [flags]

syncd restore puts the database back from its backup (the one syncd keeps
continuously, see syncd -backup), as it was at -timestamp or at the latest
point the backup holds. Stop syncd first: restore refuses to run while a
syncd holds the data directory.

With -timestamp T it never brings back a change committed after T: it
restores the last point the backup shows committed by T (it had read a
later transaction by then), which may be a few seconds before T, or up to
about a minute for a T older than 5 minutes before the backup's end.

It restores into a new file, checks it (PRAGMA integrity_check), starts a
new lineage in it (change ids after the restored point never repeat ids
the lost changes had), and only then puts it in place of <data>/fieldsync.db.
An existing database is replaced only with -force, and then kept beside it
as fieldsync.db.before-restore-<time>.

The attached files (<data>/attachments.db, backed up to the location's
attachments/) come back too, at the latest point the backup holds whatever
-timestamp says: a file is named by its SHA-256 and never changes, so a
later copy only holds more of them, and a file no restored record names is
never served. One in place is kept as attachments.db.before-restore-<time>.

Then start syncd again. Devices keep the changes the server acknowledged
for 30 days and send again what the restored server lacks; the changelog
continues under the new lineage, and HQ consumers reload (see README.md,
"Backup and restore").

Flags:
`

// restoreConfig is syncd restore's command line.
type restoreConfig struct {
	data      string
	backup    string
	timestamp string
	force     bool
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := restoreConfig{data: defaultConfig().data}
	fs := flag.NewFlagSet("syncd restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), restoreUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n-data and -backup can also be set from SYNCD_DATA and SYNCD_BACKUP, as for syncd;\na flag on the command line wins.\n")
	}
	fs.StringVar(&cfg.data, "data", cfg.data, "syncd's data `directory`: the database is restored to <data>/fieldsync.db (created if missing)")
	fs.StringVar(&cfg.backup, "backup", cfg.backup, "the `location` of the backup, as given to syncd -backup: a directory, s3://bucket/path or nats://host:port/bucket (default <data>/backup)")
	fs.StringVar(&cfg.timestamp, "timestamp", cfg.timestamp, "restore the database as it was at this `time` (RFC 3339, e.g. 2026-12-06T09:30:00Z); default the latest the backup holds")
	fs.BoolVar(&cfg.force, "force", cfg.force, "replace an existing database, which is moved aside to fieldsync.db.before-restore-<time>")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errFlags, err)
	}
	// -data and -backup from the same variables as syncd's; a restore's
	// own choices only from its command line.
	if err := cliflags.ApplyEnv(fs, "SYNCD", "timestamp", "force"); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("restore: unexpected argument %q: it takes only flags (see syncd restore -h)", fs.Arg(0))
	}
	var at time.Time
	if cfg.timestamp != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, cfg.timestamp); err != nil {
			return fmt.Errorf("restore: -timestamp %q: want RFC 3339, e.g. 2026-12-06T09:30:00Z or 2026-12-06T17:30:00+08:00", cfg.timestamp)
		}
		if at.After(time.Now()) {
			return fmt.Errorf("restore: -timestamp %s is in the future: leave it out to restore the latest point", cfg.timestamp)
		}
	}
	backupURL := cfg.backup
	if backupURL == "" {
		backupURL = filepath.Join(cfg.data, "backup")
	}
	if backupURL == "off" {
		return errors.New("restore: -backup off: give the location syncd backed up to")
	}
	return restore(ctx, cfg, backupURL, at, stdout)
}

// restore does the work of syncd restore; every step that may take long
// says so first.
func restore(ctx context.Context, cfg restoreConfig, backupURL string, at time.Time, stdout io.Writer) error {
	start := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(stdout, "syncd restore: "+format+"\n", a...) }
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	lock, err := syncd.LockDataDir(cfg.data)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	dbPath := filepath.Join(cfg.data, "fieldsync.db")
	exists := false
	if _, err := os.Stat(dbPath); err == nil {
		exists = true
		if !cfg.force {
			return fmt.Errorf("database %s exists: syncd restore replaces it only with -force (which keeps it as %s.before-restore-<time>)", dbPath, dbPath)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	what := "the latest point"
	if !at.IsZero() {
		what = "the last point committed by " + at.UTC().Format(time.RFC3339Nano)
	}
	say("reading the backup in %s for %s", backup.Redact(backupURL), what)
	p, err := backup.Latest(ctx, backupURL, at)
	if err != nil {
		return err
	}
	say("restoring the point of %s (backup transaction %d)%s", p.Time.UTC().Format(pointFormat), p.TXID, committedBy(p, at))

	// Into a new file: the database in place stays untouched until the new
	// one is restored, checked and rebased.
	tmp := dbPath + ".restoring"
	for _, f := range []string{tmp, tmp + ".tmp", tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the leftover of an earlier restore: %w", err)
		}
	}
	stopProgress := progress(stdout, tmp+".tmp", start)
	rp, err := backup.Restore(ctx, backupURL, tmp, at)
	stopProgress()
	if err != nil {
		return err
	}
	// What was restored, should the backup have moved on since Latest (a
	// syncd backing up to it from another directory).
	p = rp
	fi, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	say("restored %d bytes in %.1f s; checking integrity", fi.Size(), time.Since(start).Seconds())
	if err := backup.IntegrityCheck(ctx, tmp); err != nil {
		return fmt.Errorf("%w: the database in place is untouched; try an earlier -timestamp", err)
	}

	say("starting a new lineage")
	st, err := store.OpenServer(ctx, tmp)
	if err != nil {
		return fmt.Errorf("open the restored database: %w", err)
	}
	last, err := st.LastSeq(ctx)
	region := st.Region()
	var was string
	var l store.Lineage
	if err == nil {
		was = st.Instance()
		l, err = st.Rebase(ctx)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rebase the restored database: %w", err)
	}

	if exists {
		aside := fmt.Sprintf("%s.before-restore-%s", dbPath, time.Now().UTC().Format("20060102T150405Z"))
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(dbPath+suffix, aside+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("move the database aside: %w", err)
			}
		}
		say("moved the database that was there to %s", aside)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(tmp+suffix, dbPath+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("put the restored database in place: %w", err)
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return fmt.Errorf("put the restored database in place: %w", err)
	}
	// Litestream's own record of what it copied from the old database: the
	// next start begins the backup afresh from the restored one.
	if err := os.RemoveAll(filepath.Join(cfg.data, ".fieldsync.db-litestream")); err != nil {
		return fmt.Errorf("remove the backup's state for the old database: %w", err)
	}
	if err := restoreAttachments(ctx, cfg, backupURL, say, stdout); err != nil {
		return err
	}
	if fi, err = os.Stat(dbPath); err != nil {
		return err
	}
	say("restored %s to the point of %s: change %d, %d bytes, %.1f s; new lineage %s after change %d (was %s)",
		dbPath, p.Time.UTC().Format(pointFormat), last, fi.Size(), time.Since(start).Seconds(), l.ID, l.After, was)
	if region != "" {
		say("the database is region %s's: start syncd with -region %s (and the same -nats), on the address its phones use", region, region)
	}
	say("start syncd again: devices send what the restored server lacks, and HQ consumers reload the changelog")
	warnMissingSecrets(cfg.data, say)
	return nil
}

// warnMissingSecrets warns when the data directory lacks the server's
// secrets, which live beside the database and are not in its backup: on
// a standby machine they must be copied from the lost server (once, when
// the standby is set up).
func warnMissingSecrets(data string, say func(string, ...any)) {
	var missing []string
	why := map[string]string{
		"tls":         "the CA phones pinned at enrollment: syncd would make a new one, and every phone would refuse the server until enrolled again",
		"admin.token": "the admin credential fieldctl admin uses: syncd would make a new one",
		"audit.key":   "the audit log's key: syncd refuses to start without the one the log was written with",
	}
	for _, f := range []string{"tls", "admin.token", "audit.key"} {
		if _, err := os.Stat(filepath.Join(data, f)); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return
	}
	say("WARNING: %s lacks %s: copy them from the lost server's data directory (or from where they were kept when this standby was set up) before starting syncd:", data, strings.Join(missing, ", "))
	for _, f := range missing {
		say("  %s: %s", filepath.Join(data, f), why[f])
	}
}

// restoreAttachments puts <data>/attachments.db (the files attached to
// records) back from the backup location's AttachmentsSub, at the latest
// point the backup holds, whatever -timestamp: a file is named by its
// SHA-256 and never changes once complete, so a later copy only holds
// more files, and one the restored records do not name is never served
// (a fetch needs a record naming it). A backup without it (made before
// syncd kept files) is no error: devices offer their files again to the
// new lineage. An attachments.db in place is moved aside as the database
// is.
func restoreAttachments(ctx context.Context, cfg restoreConfig, backupURL string, say func(string, ...any), stdout io.Writer) error {
	path := filepath.Join(cfg.data, "attachments.db")
	tmp := path + ".restoring"
	for _, f := range []string{tmp, tmp + ".tmp", tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the leftover of an earlier restore: %w", err)
		}
	}
	say("restoring the attached files (attachments.db) from %s at the latest point", backup.Redact(backupURL))
	start := time.Now()
	stopProgress := progress(stdout, tmp+".tmp", start)
	p, err := backup.RestoreSub(ctx, backupURL, backup.AttachmentsSub, tmp, time.Time{})
	stopProgress()
	if errors.Is(err, backup.ErrNoBackup) {
		say("the backup holds no attached files (%s/%s is empty): devices upload theirs again to the restored server", backup.Redact(backupURL), backup.AttachmentsSub)
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore the attached files: %w (the database is restored; run syncd restore again with -force, or start syncd without them: devices upload their files again)", err)
	}
	if err := backup.IntegrityCheck(ctx, tmp); err != nil {
		return fmt.Errorf("attached files: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		aside := fmt.Sprintf("%s.before-restore-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(path+suffix, aside+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("move attachments.db aside: %w", err)
			}
		}
		say("moved the attachments.db that was there to %s", aside)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(tmp+suffix, path+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("put the restored attachments.db in place: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("put the restored attachments.db in place: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(cfg.data, ".attachments.db-litestream")); err != nil {
		return fmt.Errorf("remove the backup's state for the old attachments.db: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	say("restored %s to the point of %s (backup transaction %d): %d bytes, %.1f s", path, p.Time.UTC().Format(pointFormat), p.TXID, fi.Size(), time.Since(start).Seconds())
	return nil
}

// progress prints how much of file is written every few seconds until the
// returned function is called.
func progress(w io.Writer, file string, start time.Time) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if fi, err := os.Stat(file); err == nil {
					fmt.Fprintf(w, "syncd restore: ... %d MB written (%.0f s)\n", fi.Size()>>20, time.Since(start).Seconds())
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// pointFormat shows a backup's times as it keeps them: to the millisecond.
const pointFormat = "2006-01-02T15:04:05.000Z07:00"

// committedBy says why a point is the one for -timestamp at: what the
// backup shows of when its changes were committed (see backup.Point).
func committedBy(p backup.Point, at time.Time) string {
	if at.IsZero() || p.Committed.IsZero() {
		return ""
	}
	return fmt.Sprintf(": every change in it was committed before %s, when the backup had read the next transaction; later ones are left out, as nothing shows they were committed by %s",
		p.Committed.UTC().Format(pointFormat), at.UTC().Format(time.RFC3339Nano))
}
