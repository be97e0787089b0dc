package domain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Hot paths of a push: every mutation is validated, checked against the
// permission table and merged (domain.Apply); replicas merge states
// (MergeRecords).

func benchHLC(i int) string {
	return domain.HLC{Wall: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC).UnixMilli() + int64(i), Node: "dbench"}.String()
}

func benchVisit(i int) *pb.Mutation {
	return &pb.Mutation{Seq: uint64(i + 1), RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: benchHLC(i),
		Fields: map[string]string{"household_id": "H000123", "visited_on": "2026-11-20", "met": "戶主",
			"needs": "屋頂漏水，需要修繕；孫子上學交通不便", "help": "聯繫村委會安排維修", "follow_up": "下週回訪"}}
}

func benchHousehold() *pb.Record {
	h := benchHLC(0)
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: h} }
	return &pb.Record{Id: "H000123", Kind: pb.Kind_KIND_HOUSEHOLD, Version: 7, AuthorId: "admin", OriginDeviceId: "admin",
		Fields: map[string]*pb.FieldValue{"grid_id": fv("G00012"), "head": fv("張大山"), "address": fv("張家塆1號"),
			"phone": fv("13800000001"), "members": fv("4"), "tags": fv("低保")},
		Buckets: []string{"h:H000123", "v:V0001", "t:T01", "all"}}
}

func BenchmarkValidateMutation(b *testing.B) {
	m := benchVisit(0)
	b.ReportAllocs()
	for b.Loop() {
		if r := domain.ValidateMutation(m); r != nil {
			b.Fatal(r)
		}
	}
}

func BenchmarkCheckWrite(b *testing.B) {
	m := benchVisit(0)
	b.ReportAllocs()
	for b.Loop() {
		if r := domain.CheckWrite(pb.Role_ROLE_MEMBER, m); r != nil {
			b.Fatal(r)
		}
	}
}

func BenchmarkApplyCreateVisit(b *testing.B) {
	m := benchVisit(0)
	a := domain.Actor{UserID: "U000001", DeviceID: "dbench"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := domain.Apply(nil, m, a); r != nil {
			b.Fatal(r)
		}
	}
}

func BenchmarkApplyHouseholdEdit(b *testing.B) {
	cur := benchHousehold()
	m := &pb.Mutation{Seq: 1, RecordId: cur.GetId(), Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE, Hlc: benchHLC(5),
		Fields: map[string]string{"needs": "需要醫療救助"}, BaseHlc: map[string]string{"needs": ""}}
	a := domain.Actor{UserID: "U000001", DeviceID: "dbench"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := domain.Apply(cur, m, a); r != nil {
			b.Fatal(r)
		}
	}
}

func BenchmarkMergeRecords(b *testing.B) {
	x := benchHousehold()
	y := benchHousehold()
	y.Version = 9
	y.Fields["needs"] = &pb.FieldValue{Value: "需要醫療救助", Hlc: benchHLC(9)}
	y.Fields["phone"] = &pb.FieldValue{Value: "13900000001", Hlc: benchHLC(8)}
	b.ReportAllocs()
	for b.Loop() {
		domain.MergeRecords(x, y)
	}
}

func BenchmarkEventHash(b *testing.B) {
	f := map[string]string{"type": "service_request", "village_id": "V0001", "occurred_on": "2026-11-20",
		"subject": "代辦醫保報銷", "detail": "為戶主代辦住院費用報銷", "service_mode": "proxy", "prev_hash": fmt.Sprintf("%064x", 1)}
	b.ReportAllocs()
	for b.Loop() {
		domain.EventHash(f)
	}
}
