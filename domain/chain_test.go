package domain_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// eventOf creates, through ValidateMutation and Apply, the event n of a
// device's chain that follows prev ("" for the first).
func eventOf(t testing.TB, n int, subject, prev string) *pb.Record {
	t.Helper()
	fields := map[string]string{
		"type":        "meeting",
		"village_id":  "v-01",
		"occurred_on": fmt.Sprintf("2024-11-%02d", n+1),
		"subject":     subject,
	}
	if prev != "" {
		fields["prev_hash"] = prev
	}
	fields = hashed(fields)
	id := fmt.Sprintf("0190f3a2-1b2c-7d3e-8f40-%012x", n)
	r, _ := mustApply(t, nil, mutation(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, id, hlc(wall0+int64(n), 0, "devA"), fields), memberA)
	return r
}

// chainOf makes a correct chain of n events, in order.
func chainOf(t testing.TB, n int) []*pb.Record {
	t.Helper()
	var out []*pb.Record
	prev := ""
	for i := range n {
		e := eventOf(t, i, fmt.Sprintf("第%d次主题党日活动", i+1), prev)
		prev = fieldValue(e, "hash")
		out = append(out, e)
	}
	return out
}

// cloneEvents deep-copies events so that a case may edit them.
func cloneEvents(es []*pb.Record) []*pb.Record {
	out := make([]*pb.Record, len(es))
	for i, e := range es {
		out[i] = proto.Clone(e).(*pb.Record)
	}
	return out
}

func TestVerifyChainAcceptsShuffledChain(t *testing.T) {
	chain := chainOf(t, 5)
	rng := rand.New(rand.NewPCG(1, 2))
	orders := [][]*pb.Record{chain, slices.Clone(chain)}
	slices.Reverse(orders[1])
	for range 8 {
		o := slices.Clone(chain)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		orders = append(orders, o)
	}
	for i, o := range orders {
		t.Run(fmt.Sprintf("order %d", i), func(t *testing.T) {
			if err := domain.VerifyChain(o); err != nil {
				t.Fatalf("VerifyChain() = %v, want nil", err)
			}
		})
	}
}

func TestVerifyChainDetectsFaults(t *testing.T) {
	chain := chainOf(t, 5)
	tests := []struct {
		name    string
		events  func() []*pb.Record
		wantErr string // "" for a valid chain
	}{
		{"empty", func() []*pb.Record { return nil }, ""},
		{"empty slice", func() []*pb.Record { return []*pb.Record{} }, ""},
		{"one event", func() []*pb.Record { return chain[:1] }, ""},
		{"a prefix", func() []*pb.Record { return chain[:3] }, ""},
		{"edited event", func() []*pb.Record {
			es := cloneEvents(chain)
			es[2].Fields["subject"].Value = "第3次主题党日活动（已改）"
			return es
		}, "event " + chain[2].GetId() + ": content does not match its hash (edited)"},
		{"hash field removed", func() []*pb.Record {
			es := cloneEvents(chain)
			delete(es[4].Fields, "hash")
			return es
		}, "event " + chain[4].GetId() + ": content does not match its hash (edited)"},
		{"edited and rehashed", func() []*pb.Record {
			es := cloneEvents(chain)
			f := domain.PlainFields(es[2])
			f["subject"] = "改过并重新计算了哈希"
			es[2].Fields["subject"].Value = f["subject"]
			es[2].Fields["hash"].Value = domain.EventHash(f)
			return es
		}, "event " + chain[3].GetId() + " follows a missing event " + fieldValue(chain[2], "hash")[:12] + "… (gap)"},
		{"middle event removed", func() []*pb.Record {
			return slices.Concat(chain[:2], chain[3:])
		}, "event " + chain[3].GetId() + " follows a missing event " + fieldValue(chain[2], "hash")[:12] + "… (gap)"},
		{"first event removed", func() []*pb.Record {
			return chain[1:2]
		}, "event " + chain[1].GetId() + " follows a missing event " + fieldValue(chain[0], "hash")[:12] + "… (gap)"},
		{"fork", func() []*pb.Record {
			other := eventOf(t, 9, "另一部手机上的第3次活动", fieldValue(chain[1], "hash"))
			return slices.Concat(chain[:3], []*pb.Record{other}, chain[3:])
		}, "events " + chain[2].GetId() + " and 0190f3a2-1b2c-7d3e-8f40-000000000009 follow the same predecessor (fork)"},
		{"two starts", func() []*pb.Record {
			return []*pb.Record{chain[0], eventOf(t, 9, "重新开始", "")}
		}, "(fork)"},
		{"the same event twice", func() []*pb.Record {
			return []*pb.Record{chain[0], chain[1], chain[1]}
		}, "(fork)"},
		{"short prev_hash", func() []*pb.Record {
			// A record from elsewhere whose prev_hash is no hash at all: its
			// own hash covers it, so only the chain check can catch it.
			e := proto.Clone(chain[0]).(*pb.Record)
			f := domain.PlainFields(e)
			f["prev_hash"] = "abc"
			e.Fields["prev_hash"] = &pb.FieldValue{Value: "abc"}
			e.Fields["hash"].Value = domain.EventHash(f)
			return []*pb.Record{e}
		}, "follows a missing event abc… (gap)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := domain.VerifyChain(tt.events())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("VerifyChain() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("VerifyChain() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("VerifyChain() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// A refused event stands in the chain in its place: the gap it leaves is
// explained; a gap it does not fill, or a refused event that forks the
// chain, is still a fault.
func TestVerifyChainWithRefusedEvents(t *testing.T) {
	chain := chainOf(t, 5)
	link := func(e *pb.Record) domain.ChainLink {
		return domain.ChainLink{Prev: fieldValue(e, "prev_hash"), Hash: fieldValue(e, "hash")}
	}
	other := eventOf(t, 9, "另一部手机上的第3次活动", fieldValue(chain[1], "hash"))
	tests := []struct {
		name    string
		events  []*pb.Record
		refused []domain.ChainLink
		wantErr string
	}{
		{"middle event refused", slices.Concat(chain[:2], chain[3:]), []domain.ChainLink{link(chain[2])}, ""},
		{"first event refused", chain[1:], []domain.ChainLink{link(chain[0])}, ""},
		{"two in a row refused", slices.Concat(chain[:1], chain[3:]), []domain.ChainLink{link(chain[1]), link(chain[2])}, ""},
		{"the last refused", chain[:4], []domain.ChainLink{link(chain[4])}, ""},
		{"a refused event fills another gap", slices.Concat(chain[:1], chain[3:]), []domain.ChainLink{link(chain[2])},
			"follows a missing event " + fieldValue(chain[1], "hash")[:12] + "… (gap)"},
		{"a refused event forks the chain", chain, []domain.ChainLink{link(other)}, "(fork)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := domain.VerifyChain(tt.events, tt.refused...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("VerifyChain() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("VerifyChain() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEventHash(t *testing.T) {
	base := map[string]string{"subject": "党员大会", "type": "meeting"}
	h := domain.EventHash(base)
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("EventHash() = %q, want 64 lower-case hex digits", h)
	}
	tests := []struct {
		name   string
		fields map[string]string
		same   bool
	}{
		{"same fields", map[string]string{"type": "meeting", "subject": "党员大会"}, true},
		{"hash field ignored", map[string]string{"subject": "党员大会", "type": "meeting", "hash": "ff"}, true},
		{"value changed", map[string]string{"subject": "党员大会。", "type": "meeting"}, false},
		{"empty field added", map[string]string{"subject": "党员大会", "type": "meeting", "detail": ""}, false},
		// Length prefixes keep a boundary shift from colliding.
		{"boundary moved", map[string]string{"subject": "党员", "type": "大会meeting"}, false},
		{"key and value swapped", map[string]string{"党员大会": "subject", "type": "meeting"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.EventHash(tt.fields); (got == h) != tt.same {
				t.Fatalf("EventHash(%v) = %s, base %s: want same=%v", tt.fields, got, h, tt.same)
			}
		})
	}
	// A fixed vector, so that a change to the canonical form (which would
	// break every stored chain) fails here.
	if got, want := domain.EventHash(map[string]string{"a": "b"}), sha256Hex("\x00\x00\x00\x01a\x00\x00\x00\x01b"); got != want {
		t.Fatalf("EventHash({a: b}) = %s, want %s", got, want)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
