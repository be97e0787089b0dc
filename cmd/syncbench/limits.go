package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// limits are the parts measured alone on the same machine in the same run.
type limits struct {
	Rows               int      `json:"rows"`
	SQLiteRowsPerSec   float64  `json:"sqlite_rows_per_s"`
	SQLiteServerPerSec float64  `json:"sqlite_server_writes_per_s"`
	FsyncCommitsPerSec float64  `json:"sqlite_single_commits_per_s"`
	JetStreamPerSec    float64  `json:"jetstream_async_publish_per_s"`
	BodyBytes          int      `json:"body_bytes"`
	Notes              []string `json:"notes"`
}

// sampleVisit is a visit record as the server stores it, and its change.
func sampleVisit(i int) (*pb.Record, []byte, []byte) {
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Node: "dabcdefgh"}.String()
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
	r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Version: uint64(i + 1), AuthorId: "U012345", OriginDeviceId: "dabcdefgh",
		Fields: map[string]*pb.FieldValue{"household_id": fv("H012345"), "visited_on": fv("2026-11-20"), "met": fv("戶主"),
			"needs": fv("屋頂漏水，需要修繕；孫子上學交通不便"), "help": fv("聯繫村委會安排維修"), "follow_up": fv("下週回訪")},
		Buckets: []string{"h:H012345", "v:V0123", "t:T01", "all"}}
	body, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	ch := &pb.Change{Seq: uint64(i + 1), ChangeId: fmt.Sprintf("abcdefghijklmnop-%d", i+1), Record: r, DeviceId: "dabcdefgh", UserId: "U012345",
		CommittedMs: time.Now().UnixMilli(), Region: "T01"}
	cbody, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ch)
	return r, body, cbody
}

// sqliteDSN is the server writer's DSN (store.ServerWriterDSN): WAL,
// synchronous=FULL, its page cache and pragmas.
func sqliteDSN(path string) string { return store.ServerWriterDSN(path) }

// measureSQLite inserts n visit rows (UUIDv7 keys, the server's records
// schema) in transactions of 500 with the server's pragmas; then the same
// with the server's whole write set per mutation (record, its bucket rows
// but "all", which is the records table itself, change row); then
// single-row commits (the one-fsync-per-sync ceiling).
func measureSQLite(ctx context.Context, dir string, n int, l *limits) error {
	open := func(name string) (*sql.DB, error) {
		p := filepath.Join(dir, name)
		os.Remove(p)
		db, err := sql.Open("sqlite", sqliteDSN(p))
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		_, err = db.ExecContext(ctx, `CREATE TABLE records (
	id TEXT PRIMARY KEY, kind INTEGER NOT NULL, version INTEGER NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX records_version ON records (version);
CREATE TABLE record_buckets (
	bucket TEXT NOT NULL, record_id TEXT NOT NULL, seq INTEGER NOT NULL,
	PRIMARY KEY (bucket, record_id)) WITHOUT ROWID;
CREATE INDEX record_buckets_seq ON record_buckets (bucket, seq);
CREATE TABLE changes (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, body BLOB NOT NULL);`)
		return db, err
	}
	type row struct {
		r           *pb.Record
		body, cbody []byte
	}
	rows := make([]row, n)
	for i := range rows {
		r, body, cbody := sampleVisit(i)
		rows[i] = row{r, body, cbody}
	}
	l.BodyBytes = len(rows[0].body)
	run := func(name string, full bool, batch int, count int) (float64, error) {
		db, err := open(name)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		defer os.Remove(filepath.Join(dir, name))
		start := time.Now()
		for i := 0; i < count; i += batch {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			ins, _ := tx.PrepareContext(ctx, "INSERT INTO records (id, kind, version, village_id, town_id, body) VALUES (?, ?, ?, ?, ?, ?)")
			var bk, chg *sql.Stmt
			if full {
				bk, _ = tx.PrepareContext(ctx, "INSERT INTO record_buckets (bucket, record_id, seq) VALUES (?, ?, ?)")
				chg, _ = tx.PrepareContext(ctx, "INSERT INTO changes (seq, subject, body) VALUES (?, ?, ?)")
			}
			for j := i; j < min(i+batch, count); j++ {
				rw := rows[j]
				if _, err := ins.ExecContext(ctx, rw.r.GetId(), int(rw.r.GetKind()), j+1, "V0123", "T01", rw.body); err != nil {
					tx.Rollback()
					return 0, err
				}
				if full {
					for _, b := range rw.r.GetBuckets() {
						if b == domain.AllBucket {
							continue // as store.PutRecord: "all" is the records table
						}
						if _, err := bk.ExecContext(ctx, b, rw.r.GetId(), j+1); err != nil {
							tx.Rollback()
							return 0, err
						}
					}
					if _, err := chg.ExecContext(ctx, j+1, "fieldsync.changes.T01.visit", rw.cbody); err != nil {
						tx.Rollback()
						return 0, err
					}
				}
			}
			if err := tx.Commit(); err != nil {
				return 0, err
			}
		}
		return math.Round(float64(count) / time.Since(start).Seconds()), nil
	}
	var err error
	if l.SQLiteRowsPerSec, err = run("limit-rows.db", false, 500, n); err != nil {
		return fmt.Errorf("sqlite rows: %w", err)
	}
	if l.SQLiteServerPerSec, err = run("limit-server.db", true, 500, n); err != nil {
		return fmt.Errorf("sqlite server rows: %w", err)
	}
	if l.FsyncCommitsPerSec, err = run("limit-commits.db", false, 1, min(n, 1000)); err != nil {
		return fmt.Errorf("sqlite commits: %w", err)
	}
	return nil
}

// measureJetStream publishes n change bodies asynchronously to a scratch
// stream of its own on the server's NATS (file storage, like the
// changelog), with a Nats-Msg-Id each, waits for every acknowledgement,
// and deletes the stream.
func measureJetStream(ctx context.Context, natsURL, natsKey string, n int, l *limits) error {
	return measureJetStreamReplicas(ctx, natsURL, natsKey, n, 1, l)
}

// measureJetStreamReplicas is measureJetStream on a stream of replicas
// replicas (a cluster: -scenario regions).
func measureJetStreamReplicas(ctx context.Context, natsURL, natsKey string, n, replicas int, l *limits) error {
	nc, err := connectNATS(natsURL, natsKey)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if err != nil {
		return err
	}
	// A scratch stream of this run's own, never the changelog: on an
	// external syncd's NATS too. Deleted when done.
	run := domain.RandomToken(5)
	name, subject := "SYNCBENCH_LIMIT_"+run, "syncbench.limit."+run
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject + ".>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Duplicates: 30 * time.Second, Replicas: replicas}); err != nil {
		return err
	}
	defer js.DeleteStream(context.Background(), name)
	_, _, body := sampleVisit(0)
	start := time.Now()
	for i := range n {
		m := nats.NewMsg(subject + ".T01.visit")
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("limit-%d", i))
		m.Header.Set(domain.HeaderSeq, fmt.Sprint(i+1))
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(10*time.Second)); err != nil { // a loaded cluster (R3) acknowledges slower than 4,000 in flight drain at the default 200 ms
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("jetstream: acknowledgements missing after 2 minutes")
	}
	l.JetStreamPerSec = math.Round(float64(n) / time.Since(start).Seconds())
	return nil
}
