package server_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// storedRecord is one row of the server's records table, read from the
// SQLite file directly.
type storedRecord struct {
	id      string
	kind    pb.Kind
	version uint64
	body    []byte
}

// The export sends the stored bodies as they are: every message of a full
// export, in small batches so that there are many, carries exactly the
// bodies of the records table in version order, byte for byte, and a
// client's ordinary decoding of it gives records proto.Equal to the
// server's. Kinds and after_version select what they say; an export cut
// off after some messages resumes from the last message's last_version.
func TestExportSendsStoredRecordsAsTheyAre(t *testing.T) {
	const batchBytes, batchRecords = 1500, 4
	server.SmallExportBatches(t, batchBytes, batchRecords)
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	for i := range 9 {
		_, err := member.Create("visit", syncer.NewFields().Set("household_id", fmt.Sprintf("H00%d", 1+i%3)).Set("visited_on", "2026-11-22").
			Set("met", "張大山（戶主）、王𠀋妹").Set("needs", fmt.Sprintf("屋顶漏水；冬天取暖困難。需要：棉被×%d 「五小」e\u0301 ✅", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := member.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-11-22").Set("subject", fmt.Sprintf("三會一課 %d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := member.Update("H001", syncer.NewFields().Set("phone", "13911110001")); err != nil { // H001 moves after the visits
		t.Fatal(err)
	}
	testenv.Sync(t, member)

	stored := readRecordsTable(t, filepath.Join(e.Dir, "fieldsync.db"))
	kinds := map[pb.Kind]int{}
	for _, r := range stored {
		kinds[r.kind]++
	}
	if len(stored) < 15 || kinds[pb.Kind_KIND_HOUSEHOLD] == 0 || kinds[pb.Kind_KIND_VISIT] == 0 || kinds[pb.Kind_KIND_EVENT] == 0 {
		t.Fatalf("the test needs records of several kinds, has %v", kinds)
	}
	_, ctx := e.Admin()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// The wire, undecoded: each message's records entries are the stored
	// bodies, in version order, and last_version is the last one's.
	for _, comp := range []string{"identity", grpcgzip.Name} {
		msgs := exportRaw(t, ctx, e.Conn(), &pb.ExportRequest{}, grpc.UseCompressor(comp))
		var got []storedRecord
		for i, m := range msgs {
			bodies, last := splitExportResponse(t, m)
			if len(bodies) == 0 || len(bodies) > batchRecords {
				t.Fatalf("%s: message %d holds %d records, want 1 to %d", comp, i, len(bodies), batchRecords)
			}
			size := 0
			for _, b := range bodies {
				size += protowire.SizeTag(1) + protowire.SizeBytes(len(b))
			}
			if len(bodies) > 1 && size > batchBytes {
				t.Fatalf("%s: message %d holds %d bytes of records, over %d", comp, i, size, batchBytes)
			}
			for _, b := range bodies {
				got = append(got, storedRecord{body: b})
			}
			if want := stored[len(got)-1].version; last != want {
				t.Fatalf("%s: message %d: last_version %d, want %d", comp, i, last, want)
			}
		}
		if len(msgs) < 2 {
			t.Fatalf("%s: %d messages; the test wants more than one batch", comp, len(msgs))
		}
		if len(got) != len(stored) {
			t.Fatalf("%s: %d records exported, %d stored", comp, len(got), len(stored))
		}
		for i := range stored {
			if string(got[i].body) != string(stored[i].body) {
				t.Fatalf("%s: record %d (%s) differs from its stored body:\n got % x\nwant % x", comp, i, stored[i].id, got[i].body, stored[i].body)
			}
		}
	}

	// The ordinary client: records proto.Equal to the server's.
	all := testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{}, grpc.UseCompressor(grpcgzip.Name))
	checkSame(t, "full export", e, all, stored)

	// Only some kinds.
	var visitsEvents []storedRecord
	for _, r := range stored {
		if r.kind == pb.Kind_KIND_VISIT || r.kind == pb.Kind_KIND_EVENT {
			visitsEvents = append(visitsEvents, r)
		}
	}
	checkSame(t, "kinds visit, event", e,
		testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{Kinds: []pb.Kind{pb.Kind_KIND_VISIT, pb.Kind_KIND_EVENT}}), visitsEvents)

	// From a version.
	mid := stored[len(stored)/2].version
	checkSame(t, fmt.Sprintf("after version %d", mid), e,
		testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{AfterVersion: mid}), stored[len(stored)/2+1:])

	// Cut off after two messages, resumed from the last one's last_version.
	sctx, stop := context.WithCancel(ctx)
	stream, err := pb.NewExportServiceClient(e.Conn()).Export(sctx, &pb.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var first []*pb.Record
	var resume uint64
	for range 2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, resp.GetRecords()...)
		resume = resp.GetLastVersion()
	}
	stop()
	rest := testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{AfterVersion: resume})
	checkSame(t, "cut off and resumed", e, append(first, rest...), stored)

	// Nothing after the last version; an unknown kind is refused.
	if got := testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{AfterVersion: stored[len(stored)-1].version}); len(got) != 0 {
		t.Fatalf("after the last version: %d records", len(got))
	}
	bad, err := pb.NewExportServiceClient(e.Conn()).Export(ctx, &pb.ExportRequest{Kinds: []pb.Kind{99}})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("kind 99: %v, want InvalidArgument", err)
	}
}

// checkSame checks that got holds the records of want, in order, each
// proto.Equal to the decoded stored body and to the store's Record.
func checkSame(t *testing.T, what string, e *testenv.Env, got []*pb.Record, want []storedRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		dec := &pb.Record{}
		if err := proto.Unmarshal(w.body, dec); err != nil {
			t.Fatal(err)
		}
		srv, err := e.Store.Record(context.Background(), w.id)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got[i], dec) || !proto.Equal(got[i], srv) {
			t.Fatalf("%s: record %d is\n%v\nwant %s version %d:\n%v", what, i, got[i], w.id, w.version, dec)
		}
	}
}

func readRecordsTable(t *testing.T, path string) []storedRecord {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, kind, version, body FROM records ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedRecord
	for rows.Next() {
		var r storedRecord
		if err := rows.Scan(&r.id, &r.kind, &r.version, &r.body); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawCodec hands over a message's bytes undecoded; it sends *pb messages
// as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

// exportRaw returns each message of an export as it came on the wire
// (decompressed, if it was compressed), undecoded.
func exportRaw(t *testing.T, ctx context.Context, conn *grpc.ClientConn, req *pb.ExportRequest, opts ...grpc.CallOption) [][]byte {
	t.Helper()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, pb.ExportService_Export_FullMethodName,
		append(opts, grpc.ForceCodec(rawCodec{}))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(req); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		var m []byte
		err := stream.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// splitExportResponse walks one encoded ExportResponse: the bytes of each
// records entry, and last_version.
func splitExportResponse(t *testing.T, m []byte) (bodies [][]byte, last uint64) {
	t.Helper()
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		m = m[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			b, n := protowire.ConsumeBytes(m)
			if n < 0 {
				t.Fatalf("bad records entry: %v", protowire.ParseError(n))
			}
			bodies = append(bodies, b)
			m = m[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(m)
			if n < 0 {
				t.Fatalf("bad last_version: %v", protowire.ParseError(n))
			}
			last = v
			m = m[n:]
		default:
			t.Fatalf("unexpected field %d type %d in ExportResponse", num, typ)
		}
	}
	return bodies, last
}
