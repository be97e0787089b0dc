package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// freeAddr picks a loopback port that is free now, so that a restarted
// syncd keeps the address its devices enrolled with.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ok(t, err)
	defer l.Close()
	return l.Addr().String()
}

func startSyncd(t *testing.T, bin, dir, addr, natsAddr string) *testenv.SyncdProc {
	t.Helper()
	return testenv.StartSyncd(t, bin, "-data", dir, "-listen", addr, "-nats-listen", natsAddr, "-log-level", "warn")
}

// A real syncd is killed with SIGKILL while several devices push. After a
// restart, every mutation it had acknowledged is in SQLite; once the
// devices finish syncing, every record exists once, and the relay brings
// the JetStream changelog to exactly one message per change.
func TestKill9DuringPushesLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs syncd processes: skipped with -short (CI runs it)")
	}
	bin := testenv.BuildSyncd(t)
	dir, addr, natsAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	proc := startSyncd(t, bin, dir, addr, natsAddr)
	token := strings.TrimSpace(string(must[[]byte](t)(os.ReadFile(filepath.Join(dir, "admin.token")))))
	fp := must[string](t)(syncer.CAFingerprintFile(filepath.Join(dir, "tls", server.CAFile)))
	conn := must[*grpc.ClientConn](t)(grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(addr, fp)))))
	defer conn.Close()
	adminCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	admin := pb.NewAdminServiceClient(conn)
	imp := must[*pb.ImportOrgResponse](t)(admin.ImportOrg(adminCtx, testenv.SampleOrg()))
	if len(imp.GetErrors()) > 0 {
		t.Fatal(imp.GetErrors())
	}

	type phone struct {
		d      *syncer.Device
		create func(i int) (string, error)
		made   []string
		acked  map[string]bool
	}
	visit := func(d *syncer.Device, hh string) func(int) (string, error) {
		return func(i int) (string, error) {
			return d.Create("visit", syncer.NewFields().Set("household_id", hh).Set("visited_on", "2026-11-20").Set("needs", fmt.Sprintf("第%d次走訪", i)))
		}
	}
	var phones []*phone
	for _, u := range []string{testenv.Member, testenv.Member, testenv.Member2, testenv.Secretary} {
		code := must[*pb.CreateEnrollmentCodeResponse](t)(admin.CreateEnrollmentCode(adminCtx, &pb.CreateEnrollmentCodeRequest{UserId: u})).GetCode()
		path := filepath.Join(t.TempDir(), "phone.db")
		d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: phoneKey(path)}))
		defer d.Close()
		ok(t, d.Enroll(context.Background(), syncer.FormatEnrollment(addr, code, fp), "phone"))
		p := &phone{d: d, acked: map[string]bool{}}
		switch u {
		case testenv.Member:
			p.create = visit(d, "H001")
		case testenv.Member2:
			p.create = visit(d, "H004")
		default:
			p.create = func(i int) (string, error) {
				return d.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-11-20").Set("subject", fmt.Sprintf("三會一課 %d", i)))
			}
		}
		phones = append(phones, p)
	}

	// Each phone writes and syncs in a loop; a record is acknowledged when
	// a sync succeeded and the record is no longer pending.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range phones {
		wg.Add(1)
		go func(p *phone) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := p.create(i)
				if err != nil {
					t.Errorf("local write: %v", err)
					return
				}
				p.made = append(p.made, id)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = p.d.Sync(ctx)
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the server is down: keep working offline
					continue
				}
				for _, id := range p.made {
					if it, err := p.d.Get(id); err == nil && it.State == "synced" {
						p.acked[id] = true
					}
				}
			}
		}(p)
	}
	// Kill once enough has been acknowledged that the crash lands mid-stream.
	testenv.WaitFor(t, 60*time.Second, "acknowledged writes before the crash", func() bool {
		return countChanges(t, adminCtx, conn) > 300
	})
	proc.Kill9(t)
	time.Sleep(200 * time.Millisecond) // let the phones see the server gone and work offline
	close(stop)
	wg.Wait()

	proc = startSyncd(t, bin, dir, addr, natsAddr)
	onServer := exportIDs(t, adminCtx, conn)
	total, acked := 0, 0
	for _, p := range phones {
		for id := range p.acked {
			acked++
			if onServer[id] != 1 {
				t.Errorf("acknowledged record %s is on the server %d times after the crash", id, onServer[id])
			}
		}
		total += len(p.made)
	}
	if acked == 0 {
		t.Fatal("no write was acknowledged before the crash: the test proved nothing")
	}
	t.Logf("%d records made, %d acknowledged before the SIGKILL", total, acked)

	for _, p := range phones {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.d.Sync(ctx)
		cancel()
		ok(t, err)
		if st := must[*syncer.Status](t)(p.d.Status()); st.Pending != 0 || st.Rejected != 0 {
			t.Fatalf("after recovery a phone has %d pending and %d rejected", st.Pending, st.Rejected)
		}
	}
	onServer = exportIDs(t, adminCtx, conn)
	for _, p := range phones {
		for _, id := range p.made {
			if onServer[id] != 1 {
				t.Errorf("record %s is on the server %d times, want 1", id, onServer[id])
			}
		}
	}

	// The changelog: once the relay catches up, one message per change, in
	// order.
	nc := must[*nats.Conn](t)(nats.Connect("nats://"+natsAddr, testenv.SyncdNATS(t, dir)))
	defer nc.Close()
	js := must[jetstream.JetStream](t)(jetstream.New(nc))
	last := uint64(countChanges(t, adminCtx, conn))
	testenv.WaitFor(t, 30*time.Second, "the relay to catch up", func() bool {
		st, err := js.Stream(context.Background(), domain.StreamName)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs >= last
	})
	// last is the records' last change: the org's changes (a device's
	// health) may follow it, never a record's.
	counts, changes := testenv.ReadStream(t, js)
	if uint64(len(changes)) < last {
		t.Fatalf("stream holds %d messages, server's last record change is %d", len(changes), last)
	}
	for i, c := range changes {
		if c.GetSeq() != uint64(i+1) || counts[c.GetChangeId()] != 1 {
			t.Fatalf("stream message %d: change %d (%s) seen %d times", i+1, c.GetSeq(), c.GetChangeId(), counts[c.GetChangeId()])
		}
		if c.GetSeq() > last && c.GetRecord() != nil {
			t.Fatalf("stream message %d carries record %s after the server's last record change %d", i+1, c.GetRecord().GetId(), last)
		}
	}
	proc.Stop(t, os.Interrupt)
	if !strings.Contains(proc.Output(), "stopped cleanly") {
		t.Errorf("syncd output lacks \"stopped cleanly\":\n%s", proc.Output())
	}
}

// exportIDs counts each record id in a full HQ export.
func exportIDs(t *testing.T, ctx context.Context, conn *grpc.ClientConn) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream := must[pb.ExportService_ExportClient](t)(pb.NewExportServiceClient(conn).Export(ctx, &pb.ExportRequest{}))
	out := map[string]int{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		ok(t, err)
		for _, r := range resp.GetRecords() {
			out[r.GetId()]++
		}
	}
}

// countChanges returns the highest record version on the server, which is
// its last change number.
func countChanges(t *testing.T, ctx context.Context, conn *grpc.ClientConn) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := pb.NewExportServiceClient(conn).Export(ctx, &pb.ExportRequest{})
	if err != nil {
		return 0
	}
	last := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			return last
		}
		last = int(resp.GetLastVersion())
	}
}
