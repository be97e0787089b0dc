package domain_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func echoRecord() *pb.Record {
	return &pb.Record{Id: "D1", Kind: pb.Kind_KIND_DISPUTE, Version: 7, Buckets: []string{"d:D1", "v:V01"},
		Fields: map[string]*pb.FieldValue{
			"title":  {Value: "宅基地界線", Hlc: "01a0@dev1"},
			"status": {Value: "mediating", Hlc: "01a1@dev1"},
		},
		History: []*pb.StatusChange{
			{To: "open", Hlc: "01a0@dev1", AuthorId: "U1", AtMs: 1000},
			{From: "open", To: "mediating", Hlc: "01a1@dev1", AuthorId: "U1", AtMs: 2000},
		},
		AuthorId: "U1", OriginDeviceId: "dev1"}
}

// The hash leaves out what the server decides (version, buckets) and
// covers everything else, the stamps included.
func TestEchoHashCoversAllButVersionAndBuckets(t *testing.T) {
	r := echoRecord()
	h := domain.EchoHash(r)
	if len(h) != 16 {
		t.Fatalf("hash of %d bytes, want 16 (SHA-256's first 16)", len(h))
	}
	o := proto.Clone(r).(*pb.Record)
	o.Version, o.Buckets = 99, []string{"u:X"}
	if !bytes.Equal(domain.EchoHash(o), h) {
		t.Error("version and buckets change the hash")
	}
	for name, change := range map[string]func(*pb.Record){
		"a field's value": func(r *pb.Record) { r.Fields["title"].Value = "宅基地" },
		"a field's clock": func(r *pb.Record) { r.Fields["title"].Hlc = "01a2@dev1" },
		"a stamp":         func(r *pb.Record) { r.History[1].AtMs = 2001 },
		"the author":      func(r *pb.Record) { r.AuthorId = "U2" },
		"a new entry":     func(r *pb.Record) { r.Entries = append(r.Entries, &pb.Entry{Field: "notes", Text: "x"}) },
		"a void":          func(r *pb.Record) { r.Void = &pb.Void{Reason: "錯"} },
	} {
		o := proto.Clone(r).(*pb.Record)
		change(o)
		if bytes.Equal(domain.EchoHash(o), h) {
			t.Errorf("%s does not change the hash", name)
		}
	}
}

// Unstamp puts 0 where the push's time is, as the device computed it;
// Restamp undoes it. A record holding a 0 stamp of its own is not
// unstamped: Restamp could not tell it from the push's.
func TestEchoUnstampRestamp(t *testing.T) {
	r := echoRecord()
	r.Void = &pb.Void{Reason: "重複", AtMs: 2000}
	u, ok := domain.Unstamp(r, 2000)
	if !ok {
		t.Fatal("Unstamp refused a record without 0 stamps")
	}
	if u.History[0].AtMs != 1000 || u.History[1].AtMs != 0 || u.Void.AtMs != 0 {
		t.Fatalf("unstamped: history %v, void %v; want 1000, 0 and 0", u.History, u.Void)
	}
	if r.History[1].AtMs != 2000 {
		t.Fatal("Unstamp changed its argument")
	}
	domain.Restamp(u, 2000)
	if !proto.Equal(u, r) {
		t.Fatalf("Restamp(Unstamp(r)) = %v, want %v", u, r)
	}
	r.History[0].AtMs = 0
	if _, ok := domain.Unstamp(r, 2000); ok {
		t.Error("Unstamp took a record with a 0 stamp of its own")
	}
	if _, ok := domain.Unstamp(echoRecord(), 0); ok {
		t.Error("Unstamp took a push time of 0")
	}
}

// EchoMatches takes the 16-byte hash (EchoHash) and the older form's
// 32-byte one (ExpectedHashes: the whole SHA-256, of which EchoHash is the
// first 16), each compared on its length; other lengths and other records
// match nothing.
func TestEchoMatchesBothLengths(t *testing.T) {
	r := echoRecord()
	short := domain.EchoHash(r)
	old := domain.ExpectedHashes(map[string]*pb.Record{"D1": r})
	if len(old) != 1 || old[0].GetRecordId() != "D1" || len(old[0].GetHash()) != 32 {
		t.Fatalf("older form %v, want D1 with 32 bytes", old)
	}
	long := old[0].GetHash()
	if !bytes.Equal(long[:16], short) {
		t.Fatalf("EchoHash %x is not the first 16 bytes of the older form's %x", short, long)
	}
	if !domain.EchoMatches(r, short) || !domain.EchoMatches(r, long) {
		t.Fatal("the record does not match its own hashes")
	}
	o := proto.Clone(r).(*pb.Record)
	o.Version, o.Buckets = 99, nil
	if !domain.EchoMatches(o, short) || !domain.EchoMatches(o, long) {
		t.Error("version and buckets change the match")
	}
	o.Fields["title"].Value = "宅基地"
	if domain.EchoMatches(o, short) || domain.EchoMatches(o, long) {
		t.Error("another record matches")
	}
	for _, n := range []int{0, 8, 15, 17, 31, 33} {
		h := make([]byte, n) // the hash's first n bytes, then zeros
		copy(h, long)
		if domain.EchoMatches(r, h) {
			t.Errorf("a hash of %d bytes matches", n)
		}
	}
}

// Expect applies a device's mutations to its bases in order, leaves out
// a record a mutation does not apply to and a member's report;
// WithExpectHashes puts each record's hash on its last mutation (on
// clones), and ExpectedHashes, the older form, hashes what is left in id
// order.
func TestEchoExpect(t *testing.T) {
	a := domain.Actor{UserID: "U1", DeviceID: "dev1", Role: pb.Role_ROLE_MEMBER}
	household := &pb.Record{Id: "H1", Kind: pb.Kind_KIND_HOUSEHOLD, Version: 3, Buckets: []string{"h:H1"},
		Fields: map[string]*pb.FieldValue{"head": {Value: "張大山", Hlc: "0001@admin"}, "phone": {Value: "1", Hlc: "0001@admin"}}}
	muts := []*pb.Mutation{
		{Seq: 1, RecordId: "V1", Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: "0002@dev1",
			Fields: map[string]string{"household_id": "H1", "visited_on": "2026-12-06"}},
		{Seq: 2, RecordId: "H1", Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE, Hlc: "0003@dev1",
			Fields: map[string]string{"phone": "2"}, BaseHlc: map[string]string{"phone": "0001@admin"}},
		{Seq: 3, RecordId: "V1", Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_UPDATE, Hlc: "0004@dev1",
			Fields: map[string]string{"met": "戶主"}, BaseHlc: map[string]string{"met": ""}},
		{Seq: 4, RecordId: "D1", Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE, Hlc: "0005@dev1",
			Fields: map[string]string{"village_id": "V01", "category": "hazard", "title": "橋"}},
		// A second create of an existing id is refused by Apply.
		{Seq: 5, RecordId: "H1", Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: "0006@dev1",
			Fields: map[string]string{"household_id": "H1", "visited_on": "2026-12-06"}},
	}
	bases := map[string]*pb.Record{"H1": household}
	got, err := domain.Expect(muts[:4], func(id string) (*pb.Record, error) { return bases[id], nil }, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["V1"] == nil || got["H1"] == nil {
		t.Fatalf("expected records %v, want V1 and H1 (no report D1)", got)
	}
	if got["V1"].GetFields()["met"].GetValue() != "戶主" || got["H1"].GetFields()["phone"].GetValue() != "2" {
		t.Errorf("the mutations were not all applied: %v", got)
	}
	if household.GetFields()["phone"].GetValue() != "1" {
		t.Error("Expect changed the base")
	}
	sent := domain.WithExpectHashes(muts[:4], got)
	if len(sent) != 4 {
		t.Fatalf("%d mutations sent, want 4", len(sent))
	}
	for i, want := range [][]byte{nil, domain.EchoHash(got["H1"]), domain.EchoHash(got["V1"]), nil} {
		if !bytes.Equal(sent[i].GetExpectHash(), want) {
			t.Errorf("mutation %d (%s) expect_hash %x, want %x", i+1, sent[i].GetRecordId(), sent[i].GetExpectHash(), want)
		}
		if want == nil && sent[i] != muts[i] {
			t.Errorf("mutation %d without a hash was copied", i+1)
		}
		if len(muts[i].GetExpectHash()) != 0 {
			t.Errorf("WithExpectHashes changed mutation %d", i+1)
		}
		c := proto.Clone(sent[i]).(*pb.Mutation)
		c.ExpectHash = nil
		if !proto.Equal(c, muts[i]) {
			t.Errorf("mutation %d sent as %v, want %v with its hash", i+1, sent[i], muts[i])
		}
	}
	hs := domain.ExpectedHashes(got)
	if len(hs) != 2 || hs[0].GetRecordId() != "H1" || hs[1].GetRecordId() != "V1" || !domain.EchoMatches(got["V1"], hs[1].GetHash()) || len(hs[1].GetHash()) != 32 {
		t.Errorf("hashes %v, want H1's then V1's, 32 bytes", hs)
	}
	got, err = domain.Expect(muts, func(id string) (*pb.Record, error) { return bases[id], nil }, a)
	if err != nil {
		t.Fatal(err)
	}
	if got["H1"] != nil {
		t.Errorf("H1 expected though a mutation of it does not apply")
	}
}
