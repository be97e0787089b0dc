package domain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// EventHash is the SHA-256 of an event's fields, except "hash" itself,
// in a length-prefixed canonical form. The fields include "prev_hash", the
// hash of the device's previous event, so a device's events form a chain in
// which a gap or an edit is detectable.
func EventHash(fields map[string]string) string {
	h := sha256.New()
	var n [4]byte
	for _, k := range sortedKeys(fields) {
		if k == "hash" {
			continue
		}
		for _, s := range []string{k, fields[k]} {
			binary.BigEndian.PutUint32(n[:], uint32(len(s)))
			h.Write(n[:])
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ChainLink is an event's place in its device's chain: its prev_hash and
// its hash.
type ChainLink struct {
	Prev, Hash string
}

// VerifyChain checks the events of one device: each hash matches its
// content, exactly one starts the chain, and every other follows one that
// is present, with no forks. It returns the first fault found.
//
// refused are the links of the device's events the server refused (a
// rejection is a result, and the device chains its next events on the
// refused one as on any other): each stands in the chain in the refused
// event's place, so the gap it leaves is explained, not a fault.
func VerifyChain(events []*pb.Record, refused ...ChainLink) error {
	next := make(map[string]string, len(events)+len(refused)) // prev_hash -> event id
	hashes := make(map[string]bool, len(events)+len(refused))
	for _, l := range refused {
		if other, dup := next[l.Prev]; dup {
			return fmt.Errorf("refused event %s… and %s follow the same predecessor (fork)", l.Hash[:min(12, len(l.Hash))], other)
		}
		next[l.Prev] = "refused " + l.Hash[:min(12, len(l.Hash))] + "…"
		hashes[l.Hash] = true
	}
	for _, e := range events {
		f := PlainFields(e)
		if got := EventHash(f); got != f["hash"] {
			return fmt.Errorf("event %s: content does not match its hash (edited)", e.GetId())
		}
		if other, dup := next[f["prev_hash"]]; dup {
			return fmt.Errorf("events %s and %s follow the same predecessor (fork)", other, e.GetId())
		}
		next[f["prev_hash"]] = e.GetId()
		hashes[f["hash"]] = true
	}
	for prev, id := range next {
		if prev != "" && !hashes[prev] {
			return fmt.Errorf("event %s follows a missing event %s… (gap)", id, prev[:min(12, len(prev))])
		}
	}
	if len(events) > 0 && next[""] == "" {
		return fmt.Errorf("no event starts the chain")
	}
	return nil
}

// PlainFields returns a record's field values without their clocks.
func PlainFields(r *pb.Record) map[string]string {
	out := make(map[string]string, len(r.GetFields()))
	for k, v := range r.GetFields() {
		out[k] = v.GetValue()
	}
	return out
}
