package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// restart stops e and starts a server on the same files, address and admin
// token, as an operator restarting syncd would.
func restart(t *testing.T, e *testenv.Env) *testenv.Env {
	t.Helper()
	e.Stop()
	return testenv.Start(t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken))
}

// serverRecord reads a record's canonical state.
func serverRecord(t testing.TB, e *testenv.Env, id string) *pb.Record {
	t.Helper()
	r, err := e.Store.Record(context.Background(), id)
	if err != nil {
		t.Fatalf("server record %s: %v", id, err)
	}
	return r
}

// sameAsServer checks that a device holds exactly the server's state of a
// record, with nothing pending.
func sameAsServer(t testing.TB, e *testenv.Env, d *syncer.Device, id string) {
	t.Helper()
	it, err := d.Get(id)
	if err != nil {
		t.Fatalf("device record %s: %v", id, err)
	}
	want := serverRecord(t, e, id)
	if !proto.Equal(it.Record, want) {
		t.Fatalf("record %s differs:\ndevice %v\nserver %v", id, it.Record, want)
	}
}

// export reads every record through the Export RPC with the admin token.
func export(t testing.TB, e *testenv.Env) []*pb.Record {
	t.Helper()
	_, ctx := e.Admin()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{})
}

// waitStream waits until the relay has published every committed change,
// then checks the stream holds each exactly once and in order.
func waitStream(t testing.TB, e *testenv.Env) []*pb.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last, err := e.Store.LastSeq(ctx)
	ok(t, err)
	ok(t, e.Server.Relay().WaitPublished(ctx, last))
	counts, changes := e.StreamChanges()
	if uint64(len(changes)) != last {
		t.Fatalf("stream holds %d changes, server committed %d", len(changes), last)
	}
	for i, c := range changes {
		if c.GetSeq() != uint64(i+1) {
			t.Fatalf("stream message %d carries change %d", i+1, c.GetSeq())
		}
		if counts[c.GetChangeId()] != 1 {
			t.Fatalf("change %s appears %d times", c.GetChangeId(), counts[c.GetChangeId()])
		}
	}
	return changes
}

func errorsAs[T error](err error, target *T) bool { return errors.As(err, target) }

// withToken is a context carrying a device credential.
func withToken(t *testing.T, token string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
}

// recordChangesSince counts the changes after seq that carry a record: the
// org's changes beside them (a device's health at a sync, a refused
// event's link) are not a record committed.
func recordChangesSince(t testing.TB, e *testenv.Env, seq uint64) uint64 {
	t.Helper()
	rows, err := e.Store.ChangesAfter(context.Background(), seq, 1<<20)
	ok(t, err)
	n := uint64(0)
	for _, r := range rows {
		c := &pb.Change{}
		ok(t, proto.Unmarshal(r.Body, c))
		if c.GetRecord() != nil {
			n++
		}
	}
	return n
}
