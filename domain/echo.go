package domain

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// EchoHashSize is the length of EchoHash: the first 16 bytes of SHA-256.
const EchoHashSize = 16

// EchoHash is the hash a device sends for a record its push writes
// (Mutation.expect_hash, on the last mutation of the record) and the
// server compares with the record it holds when it answers: the first 16
// bytes (EchoHashSize) of the SHA-256 of the deterministic encoding of a
// clone without version and buckets, which the server decides and the
// answer's Echo carries. Equal hashes mean the device already holds the
// record as the server does, and the answer carries an Echo instead of
// the record.
//
// 128 bits are ample: the hash is not adversarial. A device computes it
// of its own record, and a collision could only leave that device holding
// the record it computed instead of the server's; no other device, and
// nothing the server holds, is touched.
//
// The server's clock stamps (StatusChange.at_ms, Void.at_ms) are part of
// the hash: a device computes the stamps of its own push as 0, so the
// server compares the hash of its record unstamped (Unstamp) with the
// push's time, and the device stamps its record with the Echo's at_ms
// (Restamp).
func EchoHash(r *pb.Record) []byte {
	sum, ok := echoSum(r)
	if !ok {
		return nil
	}
	return sum[:EchoHashSize]
}

// EchoMatches reports whether hash, as a device sent it, is r's: EchoHash
// (16 bytes, Mutation.expect_hash) or the whole SHA-256 (32 bytes, the
// older form, SyncRequest.expected, which ExpectedHashes makes). It
// compares on the length given; any other length matches nothing.
func EchoMatches(r *pb.Record, hash []byte) bool {
	if len(hash) != EchoHashSize && len(hash) != sha256.Size {
		return false
	}
	sum, ok := echoSum(r)
	return ok && bytes.Equal(sum[:len(hash)], hash)
}

// echoSum is the SHA-256 of the deterministic encoding of r without
// version and buckets.
func echoSum(r *pb.Record) ([sha256.Size]byte, bool) {
	c := proto.Clone(r).(*pb.Record)
	c.Version, c.Buckets = 0, nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil { // a record always encodes; an unencodable one matches nothing
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(b), true
}

// Unstamp returns a clone of r whose status changes and void stamped
// atMs carry 0 instead, as a device's computed record has them: what the
// server hashes to compare with a push made at atMs. It reports false
// (and no clone) when r holds a stamp of 0 already: Restamp could not
// tell it from the push's own, so such a record is not echoed.
func Unstamp(r *pb.Record, atMs int64) (*pb.Record, bool) {
	if atMs == 0 {
		return nil, false
	}
	c := proto.Clone(r).(*pb.Record)
	for _, h := range c.GetHistory() {
		switch h.GetAtMs() {
		case 0:
			return nil, false
		case atMs:
			h.AtMs = 0
		}
	}
	if v := c.GetVoid(); v != nil {
		switch v.GetAtMs() {
		case 0:
			return nil, false
		case atMs:
			v.AtMs = 0
		}
	}
	return c, true
}

// Restamp sets atMs on r's status changes and void that carry 0 (those
// the device's own push made): the inverse of Unstamp. r is modified.
func Restamp(r *pb.Record, atMs int64) {
	for _, h := range r.GetHistory() {
		if h.GetAtMs() == 0 {
			h.AtMs = atMs
		}
	}
	if v := r.GetVoid(); v != nil && v.GetAtMs() == 0 {
		v.AtMs = atMs
	}
}

// Expect computes, for each record the mutations write, the record as the
// server will hold it after them if nothing else changed it: the device's
// base (base(id): the server's record it holds, nil for none) with the
// mutations applied in order by Apply, as the server applies them, with
// the stamps of the server's clock at 0 (a device's Actor has no Now).
// Version and buckets are the base's: the hash leaves them out. A record
// one of the mutations does not apply to is left out (the server's answer
// is needed to know what came of it), and so is a member's report: the
// server fills in the village's mediators, which a phone does not know.
func Expect(muts []*pb.Mutation, base func(id string) (*pb.Record, error), a Actor) (map[string]*pb.Record, error) {
	out := map[string]*pb.Record{}
	skip := map[string]bool{}
	for _, m := range muts {
		id := m.GetRecordId()
		if skip[id] {
			continue
		}
		if a.Role == pb.Role_ROLE_MEMBER && m.GetKind() == pb.Kind_KIND_DISPUTE && m.GetOp() == pb.Op_OP_CREATE {
			skip[id] = true
			delete(out, id)
			continue
		}
		cur, ok := out[id]
		if !ok {
			var err error
			if cur, err = base(id); err != nil {
				return nil, err
			}
		}
		next, _, r := Apply(cur, m, a)
		if r != nil || next == nil {
			skip[id] = true
			delete(out, id)
			continue
		}
		out[id] = next
	}
	return out, nil
}

// WithExpectHashes returns the mutations a device sends for the records
// Expect computed from them: muts in order, where the last mutation of
// each of those records is a clone carrying the record's EchoHash in
// expect_hash. muts and the mutations it holds are not changed (the
// outbox keeps them without the hash, which is no part of their content).
func WithExpectHashes(muts []*pb.Mutation, recs map[string]*pb.Record) []*pb.Mutation {
	out := slices.Clone(muts)
	done := make(map[string]bool, len(recs))
	for i := len(out) - 1; i >= 0; i-- {
		id := out[i].GetRecordId()
		rec := recs[id]
		if rec == nil || done[id] {
			continue
		}
		done[id] = true
		if h := EchoHash(rec); h != nil {
			m := proto.Clone(out[i]).(*pb.Mutation)
			m.ExpectHash = h
			out[i] = m
		}
	}
	return out
}

// ExpectedHashes is the older form of the hashes, which a device sent
// before WithExpectHashes and the server still accepts
// (SyncRequest.expected): for each record Expect computed, in id order,
// its id and the whole SHA-256 (32 bytes) of which EchoHash is the first
// 16. Nothing sends it now but tests speaking as an older device.
func ExpectedHashes(recs map[string]*pb.Record) []*pb.RecordHash {
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*pb.RecordHash, 0, len(ids))
	for _, id := range ids {
		if sum, ok := echoSum(recs[id]); ok {
			out = append(out, &pb.RecordHash{RecordId: id, Hash: sum[:]})
		}
	}
	return out
}
