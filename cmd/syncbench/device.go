package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// wire counts bytes on device connections, both directions, as TLS
// records on the socket (what a phone's data plan pays for); handshake
// counts the part of them that TLS handshakes took (key shares,
// certificate, finished messages), for the wire figure without them.
var wireRead, wireWritten, handshake atomic.Int64

type countingConn struct {
	net.Conn
	n atomic.Int64 // this connection's bytes, both directions
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	wireRead.Add(int64(n))
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	wireWritten.Add(int64(n))
	c.n.Add(int64(n))
	return n, err
}

func countingDialer(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c}, nil
}

func wireBytes() int64 { return wireRead.Load() + wireWritten.Load() }

// handshakeCounting wraps a device's TLS credentials to count the bytes
// its handshakes move on the counting connection.
type handshakeCounting struct {
	credentials.TransportCredentials
}

func (h handshakeCounting) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cc, ok := raw.(*countingConn)
	if !ok {
		return h.TransportCredentials.ClientHandshake(ctx, authority, raw)
	}
	before := cc.n.Load()
	conn, info, err := h.TransportCredentials.ClientHandshake(ctx, authority, raw)
	handshake.Add(cc.n.Load() - before)
	return conn, info, err
}

func (h handshakeCounting) Clone() credentials.TransportCredentials {
	return handshakeCounting{h.TransportCredentials.Clone()}
}

// deviceDialOptions are what syncer uses (syncer/device.go dial): pinned
// TLS, gzip on every call, keepalive, fixed flow-control windows; plus the
// counting dialer.
func deviceDialOptions(ep endpoint, sessions tls.ClientSessionCache) []grpc.DialOption {
	tc := syncer.PinnedTLS(ep.Addr, ep.CA)
	tc.ClientSessionCache = sessions
	return append([]grpc.DialOption{
		grpc.WithTransportCredentials(handshakeCounting{credentials.NewTLS(tc)}),
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name), grpc.MaxCallRecvMsgSize(16<<20)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithContextDialer(countingDialer),
		grpc.WithInitialWindowSize(syncer.WindowBytes),
		grpc.WithInitialConnWindowSize(syncer.WindowBytes),
	}, ep.trip.dialOptions()...)
}

// ack is one mutation the server acknowledged, kept to check at the end.
type ack struct {
	device   string
	seq      uint64
	recordID string
	kind     pb.Kind
	op       pb.Op
	field    string // for an update: the field set, and its value
	value    string
	status   pb.MutationStatus
	at       time.Time // when the device got the acknowledgement
}

// syncStat is what one device sync did.
type syncStat struct {
	pushed, applied, rejected, pulled, calls int
	protoBytes                               int64 // protobuf size of the mutations sent and records received
	latency                                  time.Duration
}

func (a *syncStat) add(b syncStat) {
	a.pushed += b.pushed
	a.applied += b.applied
	a.rejected += b.rejected
	a.pulled += b.pulled
	a.calls += b.calls
	a.protoBytes += b.protoBytes
}

// device is one field phone of the benchmark.
type device interface {
	userID() string
	deviceID() string
	// queue adds mutations: n of the storm mix, or one visit when n is 0.
	queue(n int) error
	// sync does a whole sync (every page). fresh: on a new connection, as
	// a phone coming back into signal; otherwise on the open one.
	sync(ctx context.Context, fresh bool) (syncStat, []ack, error)
	lastSeq() uint64
	close()
}

// lite is a faithful lightweight device: a real gRPC client over pinned
// TLS with gzip (as syncer dials), real protobuf mutations numbered 1, 2,
// 3, ... per device, real per-bucket cursors, hash-chained events, and
// household edits carrying the base clock of the value it saw. Its
// replica is in memory (records it pulled are counted, not stored),
// because 22,042 SQLite files would measure the load generator's disk, not
// the server.
type lite struct {
	ep       endpoint
	id, tok  string
	user     string
	village  string
	hhs      []string
	clock    *domain.Clock
	nextSeq  uint64
	pending  []*pb.Mutation
	cursors  map[string]uint64
	needsHLC map[string]string // household -> hlc of its "needs" field as last pulled
	chain    string
	sessions tls.ClientSessionCache
	conn     *grpc.ClientConn
	// versionSent: the app's version went on this connection already.
	versionSent bool
	visits      int
	rng         uint64
}

func enrollLite(ctx context.Context, ep endpoint, admin pb.AdminServiceClient, adminCtx context.Context, cc *grpc.ClientConn, user string, hhs []string) (*lite, error) {
	code, err := admin.CreateEnrollmentCode(adminCtx, &pb.CreateEnrollmentCodeRequest{UserId: user})
	if err != nil {
		return nil, fmt.Errorf("enrollment code for %s: %w", user, err)
	}
	resp, err := pb.NewEnrollServiceClient(cc).Enroll(ctx, &pb.EnrollRequest{Code: code.GetCode(), DeviceName: "syncbench " + user, AppVersion: "syncbench-lite/1"})
	if err != nil {
		return nil, fmt.Errorf("enroll %s: %w", user, err)
	}
	return &lite{ep: ep, id: resp.GetDeviceId(), tok: resp.GetToken(), user: user, village: resp.GetVillageId(), hhs: hhs,
		clock: domain.NewClock(resp.GetDeviceId(), domain.HLC{}, 0, nil), nextSeq: 1, cursors: map[string]uint64{},
		needsHLC: map[string]string{}, sessions: tls.NewLRUClientSessionCache(1)}, nil
}

func (d *lite) userID() string   { return d.user }
func (d *lite) deviceID() string { return d.id }
func (d *lite) lastSeq() uint64  { return d.nextSeq - 1 }

func (d *lite) mutation(kind pb.Kind, op pb.Op, id string, fields map[string]string) *pb.Mutation {
	m := &pb.Mutation{Seq: d.nextSeq, RecordId: id, Kind: kind, Op: op, Hlc: d.clock.Tick().String(), Fields: fields}
	d.nextSeq++
	d.pending = append(d.pending, m)
	return m
}

func (d *lite) visit() {
	h := d.hhs[d.visits%len(d.hhs)]
	d.visits++
	d.mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, domain.NewRecordID(), map[string]string{
		"household_id": h, "visited_on": time.Now().Format("2006-01-02"), "met": "戶主",
		"needs": "屋頂漏水，需要修繕；孫子上學交通不便", "help": "聯繫村委會安排維修", "follow_up": "下週回訪"})
}

func (d *lite) event() {
	f := map[string]string{"type": "service_request", "village_id": d.village, "occurred_on": time.Now().Format("2006-01-02"),
		"subject": "代辦醫保報銷", "detail": "為戶主代辦住院費用報銷，材料已交鎮便民服務中心", "service_mode": "proxy"}
	if d.chain != "" {
		f["prev_hash"] = d.chain
	}
	f["hash"] = domain.EventHash(f)
	d.chain = f["hash"]
	d.mutation(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, domain.NewRecordID(), f)
}

func (d *lite) editHousehold() {
	h := d.hhs[0]
	m := d.mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, h, map[string]string{
		"needs": fmt.Sprintf("%s 走訪記錄 #%d：需要醫療救助", d.id, d.nextSeq)})
	m.BaseHlc = map[string]string{"needs": d.needsHLC[h]}
}

// queue: the storm mix is 10 mutations as 7 visits, 2 events, 1 household
// edit (scaled for other n).
func (d *lite) queue(n int) error {
	if n == 0 {
		d.visit()
		return nil
	}
	events := max(n/5, 0)
	edits := min(1, n-events)
	for range n - events - edits {
		d.visit()
	}
	for range events {
		d.event()
	}
	for range edits {
		d.editHousehold()
	}
	return nil
}

func (d *lite) dial() (*grpc.ClientConn, error) {
	if d.conn != nil {
		return d.conn, nil
	}
	cc, err := grpc.NewClient(d.ep.Addr, deviceDialOptions(d.ep, d.sessions)...)
	if err != nil {
		return nil, err
	}
	d.conn = cc
	return cc, nil
}

func (d *lite) close() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
		d.versionSent = false
	}
}

func (d *lite) cursorList() []*pb.Cursor {
	out := make([]*pb.Cursor, 0, len(d.cursors))
	for b, s := range d.cursors {
		out = append(out, &pb.Cursor{Bucket: b, Seq: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bucket < out[j].Bucket })
	return out
}

func (d *lite) sync(ctx context.Context, fresh bool) (syncStat, []ack, error) {
	var st syncStat
	var acks []ack
	start := time.Now()
	if fresh {
		d.close()
	}
	cc, err := d.dial()
	if err != nil {
		return st, nil, err
	}
	client := pb.NewSyncServiceClient(cc)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.tok)
	for page := 0; ; page++ {
		// As syncer does: the app's version once per connection, and back
		// only the cursors that moved.
		req := &pb.SyncRequest{Mutations: d.pending, Cursors: d.cursorList(), ChangedCursorsOnly: true}
		if !d.versionSent {
			req.AppVersion = "syncbench-lite/1"
		}
		for _, m := range d.pending {
			st.protoBytes += int64(proto.Size(m))
		}
		resp, err := client.Sync(actx, req)
		st.calls++
		if err != nil {
			return st, acks, fmt.Errorf("device %s: sync: %w", d.id, err)
		}
		d.versionSent = true
		now := time.Now()
		bySeq := map[uint64]*pb.Mutation{}
		for _, m := range d.pending {
			bySeq[m.GetSeq()] = m
		}
		for _, r := range resp.GetResults() {
			m := bySeq[r.GetSeq()]
			if m == nil {
				continue
			}
			st.pushed++
			a := ack{device: d.id, seq: r.GetSeq(), recordID: r.GetRecordId(), kind: m.GetKind(), op: m.GetOp(), status: r.GetStatus(), at: now}
			if m.GetOp() == pb.Op_OP_UPDATE {
				for k, v := range m.GetFields() {
					a.field, a.value = k, v
				}
			}
			if m.GetOp() == pb.Op_OP_ATTACH {
				a.field, a.value = "attachment", m.GetAttachment().GetSha256()
			}
			if r.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED {
				st.rejected++
			} else {
				st.applied++
			}
			acks = append(acks, a)
		}
		if len(resp.GetResults()) != len(d.pending) {
			return st, acks, fmt.Errorf("device %s: %d results for %d mutations", d.id, len(resp.GetResults()), len(d.pending))
		}
		d.pending = nil
		for _, rec := range resp.GetRecords() {
			st.pulled++
			st.protoBytes += int64(proto.Size(rec))
			if rec.GetKind() == pb.Kind_KIND_HOUSEHOLD {
				d.needsHLC[rec.GetId()] = rec.GetFields()["needs"].GetHlc()
			}
		}
		if !resp.GetChangedCursorsOnly() { // the whole scope
			clear(d.cursors)
		}
		for _, b := range resp.GetLeftBuckets() {
			delete(d.cursors, b)
		}
		for _, c := range resp.GetCursors() {
			d.cursors[c.GetBucket()] = c.GetSeq()
		}
		if !resp.GetMore() {
			break
		}
		if page > 10000 {
			return st, acks, errors.New("more than 10000 pages")
		}
	}
	st.latency = time.Since(start)
	if fresh {
		d.close() // the phone goes back to sleep
	}
	return st, acks, nil
}

// real is a device running the real syncer with its own SQLite file.
type realDev struct {
	d       *syncer.Device
	user    string
	id      string
	hhs     []string
	visits  int
	mu      sync.Mutex
	queued  map[string]ack // record id -> what was queued
	ep      endpoint
	dir     string
	created []string
}

func enrollReal(ctx context.Context, ep endpoint, admin pb.AdminServiceClient, adminCtx context.Context, dir, user string, hhs []string) (*realDev, error) {
	code, err := admin.CreateEnrollmentCode(adminCtx, &pb.CreateEnrollmentCodeRequest{UserId: user})
	if err != nil {
		return nil, err
	}
	d, err := syncer.OpenWith(filepath.Join(dir, user+".db"), &syncer.Options{
		DialOptions: append([]grpc.DialOption{grpc.WithContextDialer(countingDialer)}, ep.trip.dialOptions()...), ConnectTimeout: 30 * time.Second, AppVersion: "syncbench-real/1"})
	if err != nil {
		return nil, err
	}
	if err := d.Enroll(ctx, syncer.FormatEnrollment(ep.Addr, code.GetCode(), ep.CA), "syncbench real "+user); err != nil {
		d.Close()
		return nil, err
	}
	id, err := d.Identity()
	if err != nil {
		d.Close()
		return nil, err
	}
	return &realDev{d: d, user: user, id: id.DeviceID, hhs: hhs, queued: map[string]ack{}, ep: ep}, nil
}

func (r *realDev) userID() string   { return r.user }
func (r *realDev) deviceID() string { return r.id }
func (r *realDev) lastSeq() uint64  { return uint64(len(r.queued)) }
func (r *realDev) close()           { r.d.Close() }

func (r *realDev) queue(n int) error {
	add := func(kind pb.Kind, op pb.Op, id, field, value string, err error) error {
		if err != nil {
			return err
		}
		r.queued[fmt.Sprintf("%s#%d", id, len(r.queued)+1)] = ack{device: r.id, seq: uint64(len(r.queued) + 1), recordID: id, kind: kind, op: op, field: field, value: value}
		return nil
	}
	visit := func() error {
		h := r.hhs[r.visits%len(r.hhs)]
		r.visits++
		id, err := r.d.Create("visit", syncer.NewFields().Set("household_id", h).Set("visited_on", time.Now().Format("2006-01-02")).
			Set("met", "戶主").Set("needs", "屋頂漏水，需要修繕；孫子上學交通不便").Set("help", "聯繫村委會安排維修").Set("follow_up", "下週回訪"))
		return add(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, id, "", "", err)
	}
	if n == 0 {
		return visit()
	}
	events := n / 5
	edits := min(1, n-events)
	for range n - events - edits {
		if err := visit(); err != nil {
			return err
		}
	}
	for range events {
		id, err := r.d.Create("event", syncer.NewFields().Set("type", "service_request").Set("occurred_on", time.Now().Format("2006-01-02")).
			Set("subject", "代辦醫保報銷").Set("detail", "為戶主代辦住院費用報銷，材料已交鎮便民服務中心").Set("service_mode", "proxy"))
		if err := add(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, id, "", "", err); err != nil {
			return err
		}
	}
	for range edits {
		v := fmt.Sprintf("%s 走訪記錄 #%d：需要醫療救助", r.id, len(r.queued)+1)
		err := r.d.Update(r.hhs[0], syncer.NewFields().Set("needs", v))
		if err := add(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, r.hhs[0], "needs", v, err); err != nil {
			return err
		}
	}
	return nil
}

func (r *realDev) sync(ctx context.Context, fresh bool) (syncStat, []ack, error) {
	start := time.Now()
	rep, err := r.d.Sync(ctx)
	st := syncStat{latency: time.Since(start)}
	if rep != nil {
		st.pushed, st.applied, st.rejected, st.pulled, st.calls = rep.Pushed, rep.Applied, rep.Rejected, rep.Pulled, rep.Calls
	}
	if err != nil {
		return st, nil, fmt.Errorf("real device %s: %w", r.id, err)
	}
	var acks []ack
	now := time.Now()
	for k, a := range r.queued {
		if a.at.IsZero() {
			a.at, a.status = now, pb.MutationStatus_MUTATION_STATUS_APPLIED
			r.queued[k] = a
			acks = append(acks, a)
		}
	}
	// The real syncer's wire sizes are counted on its connection; its
	// protobuf sizes are not visible from outside, so they are left out.
	return st, acks, nil
}
