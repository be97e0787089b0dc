package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// importHouseholds commits n changes through a real syncd's admin import.
func importHouseholds(t *testing.T, dir, addr, prefix string, n int) {
	t.Helper()
	token := strings.TrimSpace(string(must[[]byte](t)(os.ReadFile(filepath.Join(dir, "admin.token")))))
	conn := must[*grpc.ClientConn](t)(grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())))
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	req := &pb.ImportOrgRequest{}
	if prefix == "" {
		req = testenv.SampleOrg()
	}
	for i := range n {
		req.Households = append(req.Households, &pb.Household{Id: fmt.Sprintf("%s%03d", prefix, i), GridId: testenv.Grid, Head: "戶主", Address: "張家塆", Members: "2"})
	}
	resp := must[*pb.ImportOrgResponse](t)(pb.NewAdminServiceClient(conn).ImportOrg(ctx, req))
	if len(resp.GetErrors()) > 0 {
		t.Fatal(resp.GetErrors())
	}
}

// stoppedChangelog opens a stopped syncd's database and JetStream store
// in process (no relay) and returns the stream's change ids in order, the
// database's lineage, and how the stream differs from the database (nil:
// message n = change n throughout).
func stoppedChangelog(t *testing.T, dir string) (ids []string, lineage string, diff error) {
	t.Helper()
	ns, err := server.EmbeddedNATS(filepath.Join(dir, "nats"), "127.0.0.1", -1)
	ok(t, err)
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc := must[*nats.Conn](t)(nats.Connect("", nats.InProcessServer(ns)))
	defer nc.Close()
	js := must[jetstream.JetStream](t)(jetstream.New(nc))
	st, err := store.OpenServer(t.Context(), filepath.Join(dir, "fieldsync.db"))
	ok(t, err)
	defer st.Close()
	_, changes := testenv.ReadStream(t, js)
	for _, c := range changes {
		ids = append(ids, c.GetChangeId())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return ids, st.Instance(), testenv.StreamMatchesDB(ctx, js, st)
}

// A server whose database was put back to an older copy (VACUUM INTO,
// while stopped) while the changelog kept the changes made since: syncd
// notices at start, before it serves, that the stream holds changes of
// the database's own lineage beyond its last one; the database gets a new
// lineage, the stream is rebuilt from it, and the new changes carry ids
// that the old stream never had.
func TestSyncdRebasesADatabaseThatWentBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs syncd processes: skipped with -short (CI runs it)")
	}
	bin := testenv.BuildSyncd(t)
	dir, addr := t.TempDir(), freeAddr(t)
	start := func() *testenv.SyncdProc {
		return testenv.StartSyncd(t, bin, "-data", dir, "-listen", addr, "-nats-listen", "127.0.0.1:-1", "-insecure-plaintext")
	}
	p := start()
	if !strings.Contains(p.Output(), "at most 64GiB") {
		t.Errorf("syncd does not show the embedded JetStream's store limit:\n%s", p.Output())
	}
	importHouseholds(t, dir, p.Addr, "", 0)
	p.Stop(t, syscall.SIGTERM)

	backup := filepath.Join(t.TempDir(), "backup.db")
	db := must[*sql.DB](t)(sql.Open("sqlite", filepath.Join(dir, "fieldsync.db")))
	_, err := db.Exec("VACUUM INTO ?", backup)
	ok(t, err)
	ok(t, db.Close())

	p = start()
	importHouseholds(t, dir, p.Addr, "HA", 20)
	p.Stop(t, syscall.SIGTERM)
	before, oldLineage, diff := stoppedChangelog(t, dir)
	ok(t, diff)

	// Put the older copy back.
	for _, f := range []string{"fieldsync.db", "fieldsync.db-wal", "fieldsync.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	ok(t, os.Rename(backup, filepath.Join(dir, "fieldsync.db")))

	p = start()
	if !strings.Contains(p.Output(), "went back in time") || !strings.Contains(p.Output(), "did not match the database") {
		t.Fatalf("syncd did not say that the database went back and that it rebuilt the stream:\n%s", p.Output())
	}
	importHouseholds(t, dir, p.Addr, "HB", 5)
	p.Stop(t, syscall.SIGTERM)

	after, newLineage, diff := stoppedChangelog(t, dir)
	if diff != nil {
		t.Fatalf("after the restart the stream differs from the database: %v\n%s", diff, p.Output())
	}
	if newLineage == oldLineage {
		t.Fatalf("the database kept lineage %s after going back", oldLineage)
	}
	old := map[string]bool{}
	for _, id := range before {
		old[id] = true
	}
	for _, id := range after[len(after)-5:] {
		if old[id] || !strings.HasPrefix(id, newLineage+"-") {
			t.Errorf("new change %s: want a new id in lineage %s", id, newLineage)
		}
	}
	if len(after) >= len(before) {
		t.Fatalf("the stream kept the changes the database lost: %d messages before, %d after", len(before), len(after))
	}
}

// A JetStream store damaged while syncd was stopped (the start of its
// first block zeroed): syncd says so at start and rebuilds the stream.
// server/relay_damaged_store_test.go tries more damages in process.
func TestSyncdRebuildsAStreamDamagedWhileStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs syncd processes: skipped with -short (CI runs it)")
	}
	bin := testenv.BuildSyncd(t)
	dir, addr := t.TempDir(), freeAddr(t)
	start := func() *testenv.SyncdProc {
		return testenv.StartSyncd(t, bin, "-data", dir, "-listen", addr, "-nats-listen", "127.0.0.1:-1", "-insecure-plaintext")
	}
	p := start()
	importHouseholds(t, dir, p.Addr, "", 0)
	importHouseholds(t, dir, p.Addr, "HA", 500)
	p.Stop(t, syscall.SIGTERM)
	_, _, diff := stoppedChangelog(t, dir)
	ok(t, diff)

	blk := filepath.Join(dir, "nats", "jetstream", "$G", "streams", "FIELDSYNC_CHANGES", "msgs", "1.blk")
	f := must[*os.File](t)(os.OpenFile(blk, os.O_WRONLY, 0))
	_, err := f.WriteAt(make([]byte, 64<<10), 0)
	ok(t, err)
	ok(t, f.Close())

	p = start()
	// The zeroed block recovers as an empty stream: syncd says so and
	// republishes everything.
	if !strings.Contains(p.Output(), "relay: the changelog stream is empty") && !strings.Contains(p.Output(), "did not match the database") {
		t.Fatalf("syncd did not say it rebuilt the damaged stream:\n%s", p.Output())
	}
	importHouseholds(t, dir, p.Addr, "HB", 5)
	p.Stop(t, syscall.SIGTERM)
	if _, _, diff := stoppedChangelog(t, dir); diff != nil {
		t.Fatalf("after the restart the stream differs from the database: %v\n%s", diff, p.Output())
	}
}
