package domain

import (
	"crypto/sha256"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// EchoHash is the hash a device sends for a record its push writes
// (SyncRequest.expected) and the server compares with the record it holds
// when it answers: SHA-256 of the deterministic encoding of a clone without
// version and buckets, which the server decides and the answer's Echo
// carries. Equal hashes mean the device already holds the record as the
// server does, and the answer carries an Echo instead of the record.
//
// The server's clock stamps (StatusChange.at_ms, Void.at_ms) are part of
// the hash: a device computes the stamps of its own push as 0, so the
// server compares the hash of its record unstamped (Unstamp) with the
// push's time, and the device stamps its record with the Echo's at_ms
// (Restamp).
func EchoHash(r *pb.Record) []byte {
	c := proto.Clone(r).(*pb.Record)
	c.Version, c.Buckets = 0, nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil { // a record always encodes; an unencodable one matches nothing
		return nil
	}
	sum := sha256.Sum256(b)
	return sum[:]
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
