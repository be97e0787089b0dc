package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// verdict is the end-of-run check of every acknowledged mutation against
// the server (Export, ListDevices) and the changelog stream.
type verdict struct {
	Acked            int      `json:"acked"`
	Lost             int      `json:"lost"`
	Duplicated       int      `json:"duplicated"`
	ServerRecords    int      `json:"server_records"`
	StreamMessages   int      `json:"stream_messages"`
	StreamGaps       int      `json:"stream_gaps"`
	DeviceSeqMismtch int      `json:"device_seq_mismatches"`
	Problems         []string `json:"problems,omitempty"`
	byScenario       map[string][2]int
}

func (v *verdict) problem(scenario string, lost bool, format string, args ...any) {
	c := v.byScenario[scenario]
	if lost {
		v.Lost++
		c[0]++
	} else {
		v.Duplicated++
		c[1]++
	}
	v.byScenario[scenario] = c
	if len(v.Problems) < 20 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

func (b *bench) verify() (*verdict, error) {
	v := &verdict{byScenario: map[string][2]int{}, Acked: len(b.acks)}
	// The server's state: every record, from version 0.
	recs := map[string]*pb.Record{}
	stream, err := b.exportC.Export(b.actx, &pb.ExportRequest{})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var head uint64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		for _, r := range resp.GetRecords() {
			if _, dup := recs[r.GetId()]; dup {
				v.problem("export", false, "export sent record %s twice", r.GetId())
			}
			recs[r.GetId()] = r
			head = max(head, r.GetVersion())
		}
	}
	v.ServerRecords = len(recs)
	// The stream's message n is change n, and the org's changes (units,
	// people, links, device health) are numbered among the records': wait
	// for the server's last record change, not for a count of the records'
	// changes, which the org's changes would reach before the relay has
	// published the last records.
	if err := b.waitStream(max(b.expectChanges, head), 2*time.Minute); err != nil {
		v.Problems = append(v.Problems, "stream: "+err.Error())
	}

	// The stream: every message, in order.
	st, err := b.js.Stream(b.ctx, b.streamName())
	if err != nil {
		return nil, err
	}
	info, err := st.Info(b.ctx)
	if err != nil {
		return nil, err
	}
	msgIDs := map[string]int{}
	perRecord := map[string]int{}
	var lastRecord uint64 // the stream's last change that carries a record
	if info.State.Msgs > 0 {
		cons, err := st.OrderedConsumer(b.ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, err
		}
		want := uint64(1)
		for uint64(v.StreamMessages) < info.State.Msgs {
			batch, err := cons.Fetch(min(5000, int(info.State.Msgs)-v.StreamMessages), jetstream.FetchMaxWait(10*time.Second))
			if err != nil {
				return nil, err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				v.StreamMessages++
				msgIDs[m.Headers().Get(jetstream.MsgIDHeader)]++
				seq, _ := strconv.ParseUint(m.Headers().Get(domain.HeaderSeq), 10, 64)
				if seq != want {
					v.StreamGaps++
				}
				want = seq + 1
				c := &pb.Change{}
				if err := proto.Unmarshal(m.Data(), c); err == nil && c.GetRecord() != nil {
					perRecord[c.GetRecord().GetId()]++
					lastRecord = seq
				}
			}
			if err := batch.Error(); err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, fmt.Errorf("stream says %d messages, read %d", info.State.Msgs, v.StreamMessages)
			}
		}
	}
	for id, n := range msgIDs {
		if n > 1 {
			v.problem("stream", false, "stream carries change %s %d times", id, n)
		}
	}
	// The org's changes (units, people, links, device health) travel
	// beside the records: the stream's last record change is the
	// records' last version, and the gap check above covers the rest.
	if lastRecord != head {
		v.Problems = append(v.Problems, fmt.Sprintf("the stream's last record change is %d (of %d messages), the server's last record version is %d", lastRecord, v.StreamMessages, head))
	}

	// Every acknowledged mutation: its effect on the server, once, and its
	// change in the stream, once.
	lastEdit := map[string]int{}
	applied := map[string]int{} // acknowledged mutations applied to each record: one change each
	for i, a := range b.acks {
		if a.op == pb.Op_OP_UPDATE {
			lastEdit[a.recordID+"/"+a.field] = i
		}
		if a.status != pb.MutationStatus_MUTATION_STATUS_REJECTED {
			applied[a.recordID]++
		}
	}
	for i, a := range b.acks {
		sc := b.ackScenario[i]
		if a.status == pb.MutationStatus_MUTATION_STATUS_REJECTED {
			v.problem(sc, true, "device %s mutation %d (%s) was rejected", a.device, a.seq, a.recordID)
			continue
		}
		r := recs[a.recordID]
		switch a.op {
		case pb.Op_OP_CREATE:
			switch {
			case r == nil:
				v.problem(sc, true, "device %s mutation %d: record %s acknowledged, not on the server", a.device, a.seq, a.recordID)
			case perRecord[a.recordID] == 0:
				v.problem(sc, true, "device %s mutation %d: record %s acknowledged, not in the stream", a.device, a.seq, a.recordID)
			case perRecord[a.recordID] > applied[a.recordID]:
				v.problem(sc, false, "record %s: %d acknowledged mutations (its create the first), %d changes in the stream", a.recordID, applied[a.recordID], perRecord[a.recordID])
			}
		case pb.Op_OP_UPDATE:
			if lastEdit[a.recordID+"/"+a.field] != i {
				continue
			}
			if r == nil || r.GetFields()[a.field].GetValue() != a.value {
				v.problem(sc, true, "device %s mutation %d: %s.%s acknowledged, the server holds %q", a.device, a.seq, a.recordID, a.field, r.GetFields()[a.field].GetValue())
			}
		case pb.Op_OP_ATTACH: // the record names the file (its bytes are checked by the photos scenario)
			if r == nil || !domain.HasAttachment(r, a.value) {
				v.problem(sc, true, "device %s mutation %d: file %s attached to %s acknowledged, the server's record does not name it", a.device, a.seq, a.value, a.recordID)
			}
		}
	}
	// Each device's last number on the server is the device's own.
	seqs := map[string]uint64{}
	token := ""
	for {
		resp, err := b.admin.ListDevices(b.actx, &pb.ListDevicesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		for _, d := range resp.GetDevices() {
			seqs[d.GetId()] = d.GetLastSeq()
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	for _, d := range b.devs {
		if got, want := seqs[d.deviceID()], d.lastSeq(); got != want {
			v.DeviceSeqMismtch++
			if got < want {
				v.problem("devices", true, "device %s numbered %d mutations, the server applied up to %d", d.deviceID(), want, got)
			} else {
				v.problem("devices", false, "device %s numbered %d mutations, the server says %d", d.deviceID(), want, got)
			}
		}
	}
	return v, nil
}
