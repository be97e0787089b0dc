package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// The link scenario (-scenario link) measures one phone running the real
// syncer over an emulated 2G link: linkOneWay of latency each way and
// linkBytesPerSec each way, by a net.Conn wrapped around the real socket
// (grpc.WithContextDialer). It counts the bytes each way (TLS records, the
// socket's payload: no TCP/IP headers) and the round trips, and times the
// sync on that link. The server runs in this process (the link, not the
// server, is measured), with a village of linkHouseholds households linked
// to one member; a second device of the same member (on loopback, not
// measured) writes what the phone pulls.
const (
	linkOneWay      = 250 * time.Millisecond
	linkBytesPerSec = 12500
	linkHouseholds  = 10
)

// linkStats counts one phone's traffic on its emulated link.
//
// A round trip is the client sending and then reading what the server
// sent after that sending reached it: a read of bytes the server wrote
// after the earliest client write not yet answered was delivered to it.
// Bytes the server had sent before (the rest of a long answer, a frame it
// sent of its own accord) arrive in the same trip and are not counted
// again; nor is a client's acknowledgement written while an answer is
// still arriving. The TCP handshake counts as one (the dialer waits for
// it); DNS is not involved (the address is an IP).
type linkStats struct {
	mu         sync.Mutex
	up, down   int64
	trips      int
	conns      int
	unanswered time.Time // when the earliest unanswered client write reached the server
}

func (s *linkStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.down, s.trips, s.conns, s.unanswered = 0, 0, 0, 0, time.Time{}
}

func (s *linkStats) snapshot() (up, down int64, trips, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.down, s.trips, s.conns
}

// linkDialer dials the server and wraps the socket in the emulated link.
func (s *linkStats) dial(ctx context.Context, addr string) (net.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// TCP's SYN, SYN-ACK: one round trip before the first byte.
	select {
	case <-time.After(2 * linkOneWay):
	case <-ctx.Done():
		raw.Close()
		return nil, ctx.Err()
	}
	s.mu.Lock()
	s.trips++
	s.conns++
	s.mu.Unlock()
	c := &linkConn{raw: raw, st: s, up: make(chan linkChunk, 4096), down: make(chan linkChunk, 4096), closed: make(chan struct{})}
	go c.sendLoop()
	go c.recvLoop()
	return c, nil
}

// linkChunk is bytes on their way: sent is when they left the sender, at
// when they reach the other end.
type linkChunk struct {
	b        []byte
	sent, at time.Time
	err      error
}

// linkConn delays and throttles both directions of a connection: bytes
// queue behind those before them at linkBytesPerSec, then travel for
// linkOneWay.
type linkConn struct {
	raw        net.Conn
	st         *linkStats
	mu         sync.Mutex
	upBusy     time.Time // when the uplink finishes sending what is queued
	downBusy   time.Time // recvLoop's alone
	up, down   chan linkChunk
	pending    []byte
	closeOnce  sync.Once
	closed     chan struct{}
	readErr    error
	writeClose bool
}

func transferTime(n int) time.Duration {
	return time.Duration(float64(n) / linkBytesPerSec * float64(time.Second))
}

// linkSegment is how the link cuts bytes (a TCP segment's payload): a
// segment arrives whole once its last byte crossed, so a long write
// streams instead of arriving all at once.
const linkSegment = 1448

func (c *linkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.writeClose {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	now := time.Now()
	var chunks []linkChunk
	for off := 0; off < len(b); off += linkSegment {
		seg := b[off:min(off+linkSegment, len(b))]
		c.upBusy = later(now, c.upBusy).Add(transferTime(len(seg)))
		chunks = append(chunks, linkChunk{b: append([]byte(nil), seg...), sent: now, at: c.upBusy.Add(linkOneWay)})
	}
	c.mu.Unlock()
	c.st.mu.Lock()
	c.st.up += int64(len(b))
	if c.st.unanswered.IsZero() && len(chunks) > 0 {
		c.st.unanswered = chunks[0].at
	}
	c.st.mu.Unlock()
	for _, ch := range chunks {
		select {
		case c.up <- ch:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return len(b), nil
}

func (c *linkConn) sendLoop() {
	for {
		select {
		case ch := <-c.up:
			if !sleepUntil(ch.at, c.closed) {
				return
			}
			if _, err := c.raw.Write(ch.b); err != nil {
				c.Close()
				return
			}
		case <-c.closed:
			return
		}
	}
}

func (c *linkConn) recvLoop() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.raw.Read(buf)
		now := time.Now()
		for off := 0; off < n; off += linkSegment {
			seg := buf[off:min(off+linkSegment, n)]
			c.downBusy = later(now, c.downBusy).Add(transferTime(len(seg)))
			select {
			case c.down <- linkChunk{b: append([]byte(nil), seg...), sent: now, at: c.downBusy.Add(linkOneWay)}:
			case <-c.closed:
				return
			}
		}
		if err != nil {
			select {
			case c.down <- linkChunk{err: err, at: later(now, c.downBusy).Add(linkOneWay)}:
			case <-c.closed:
			}
			return
		}
	}
}

func sleepUntil(t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-stop:
		return false
	}
}

func (c *linkConn) Read(b []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		var ch linkChunk
		select {
		case ch = <-c.down:
		case <-c.closed:
			return 0, net.ErrClosed
		}
		if !sleepUntil(ch.at, c.closed) {
			return 0, net.ErrClosed
		}
		if ch.err != nil {
			c.readErr = ch.err
			return 0, ch.err
		}
		c.pending = ch.b
		c.st.mu.Lock()
		c.st.down += int64(len(ch.b))
		if !c.st.unanswered.IsZero() && !ch.sent.Before(c.st.unanswered) {
			c.st.trips++
			c.st.unanswered = time.Time{}
		}
		c.st.mu.Unlock()
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *linkConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.writeClose = true
		c.mu.Unlock()
		close(c.closed)
	})
	return c.raw.Close()
}

func (c *linkConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *linkConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *linkConn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *linkConn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *linkConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// linkResult is one measured case.
type linkResult struct {
	Case       string  `json:"case"`
	Connection string  `json:"connection"` // cold: a new Device on the replica (a new app process); warm: the open connection
	Up         int64   `json:"bytes_up"`
	Down       int64   `json:"bytes_down"`
	Trips      int     `json:"round_trips"`
	Conns      int     `json:"tcp_connections"`
	Seconds    float64 `json:"seconds"`
	Pushed     int     `json:"pushed"`
	Pulled     int     `json:"pulled"`
	Calls      int     `json:"sync_calls"`
}

// linkPhone is the measured phone: a real syncer Device whose every
// connection goes through the emulated link.
type linkPhone struct {
	path string
	st   *linkStats
	d    *syncer.Device
}

func (p *linkPhone) open() error {
	d, err := syncer.OpenWith(p.path, &syncer.Options{
		DialOptions:    []grpc.DialOption{grpc.WithContextDialer(p.st.dial)},
		ConnectTimeout: time.Minute, AppVersion: "syncbench-link/1"})
	if err != nil {
		return err
	}
	p.d = d
	return nil
}

// reopen closes the Device and opens the replica again, as a new app
// process would: nothing of the connection is left in memory.
func (p *linkPhone) reopen() error {
	if err := p.d.Close(); err != nil {
		return err
	}
	return p.open()
}

func (p *linkPhone) measure(ctx context.Context, name, conn string) (*linkResult, error) {
	p.st.reset()
	start := time.Now()
	rep, err := p.d.Sync(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", name, conn, err)
	}
	r := &linkResult{Case: name, Connection: conn, Seconds: round2(time.Since(start).Seconds()),
		Pushed: rep.Pushed, Pulled: rep.Pulled, Calls: rep.Calls}
	r.Up, r.Down, r.Trips, r.Conns = p.st.snapshot()
	return r, nil
}

// What visits say, drawn from a seeded source so that each visit's text
// differs, as field notes do (identical notes would let gzip shrink a
// page of them to almost nothing and flatter every figure).
var (
	visitMet   = []string{"戶主", "戶主妻子", "戶主兒子", "戶主母親", "孫女", "鄰居代為轉達"}
	visitNeeds = []string{"屋頂漏水，需要修繕", "孫子上學交通不便", "高血壓藥快吃完了，要去鎮衛生院開藥", "低保年審材料還差戶口本複印件",
		"想申請危房改造補助", "家裡的豬生病了，想請獸醫看看", "兒子在外打工，老人一個人住，行動不便", "自來水管凍裂，要換一截",
		"醫保報銷單據丟了一張，問能否補開", "想學電商賣自家的茶葉", "院子裡的路燈壞了", "殘疾證到期，需要重新鑑定"}
	visitHelp = []string{"聯繫村委會安排維修", "已登記，下週帶去鎮上辦理", "幫忙打電話給衛生院預約", "代填申請表，材料齊了交村裡",
		"告知補助政策和所需材料", "約了鎮獸醫站明天上門", "請鄰居每天看一眼，村醫每週上門", "找了村裡的水電工", "說明補開流程", "推薦參加縣裡的電商培訓"}
	visitFollow = []string{"下週回訪", "明天再來", "下個月回訪", "辦完後電話告知", "月底前回訪", "不需回訪"}
)

// writeVisits writes n visits on d, one per household in turn.
func writeVisits(d *syncer.Device, hhs []string, n int, r *rand.Rand) error {
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	for i := range n {
		_, err := d.Create("visit", syncer.NewFields().Set("household_id", hhs[i%len(hhs)]).Set("visited_on", time.Now().AddDate(0, 0, -r.IntN(3)).Format("2006-01-02")).
			Set("met", pick(visitMet)).Set("needs", pick(visitNeeds)+"；"+pick(visitNeeds)).Set("help", pick(visitHelp)).Set("follow_up", pick(visitFollow)))
		if err != nil {
			return err
		}
	}
	return nil
}

// runLink runs the link scenario: the first sync of 50 records (10
// households, 40 visits) on the enrollment's connection (warm) and on a
// new process (cold), then a day's sync (10 visits up, 10 written by the
// other device down) and a no-op sync, each cold and warm.
func runLink(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	dir := cfg.dir
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "syncbench-link-"); err != nil {
			return err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	bs, err := startServer(ctx, filepath.Join(dir, "server"), stderr, serverOpts{})
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer bs.stop()
	ep := bs.ep
	fmt.Fprintf(stderr, "syncbench: link %v each way, %d B/s each way; server on %s; files in %s\n", linkOneWay, linkBytesPerSec, ep.Addr, dir)
	adminConn, err := grpc.NewClient(ep.Addr, deviceDialOptions(ep, nil)...)
	if err != nil {
		return err
	}
	defer adminConn.Close()
	admin := pb.NewAdminServiceClient(adminConn)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ep.Token)
	c := makeCity(citySpec{Households: linkHouseholds, Members: 1, Grids: 1, Villages: 1, Towns: 1}, cfg.seed)
	if err := importCity(actx, admin, c, cfg.importBatch, io.Discard); err != nil {
		return err
	}
	texts := rand.New(rand.NewPCG(cfg.seed, 14))
	member := c.members[0].Id
	hhs := c.linked[member]
	code := func() (string, error) {
		resp, err := admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: member})
		if err != nil {
			return "", err
		}
		return syncer.FormatEnrollment(ep.Addr, resp.GetCode(), ep.CA), nil
	}

	// The other device: the member's second phone, on loopback.
	other, err := syncer.OpenWith(filepath.Join(dir, "other.db"), &syncer.Options{ConnectTimeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer other.Close()
	en, err := code()
	if err != nil {
		return err
	}
	if err := other.Enroll(ctx, en, "syncbench link other"); err != nil {
		return err
	}
	if err := writeVisits(other, hhs, 40, texts); err != nil {
		return err
	}
	if _, err := other.Sync(ctx); err != nil {
		return err
	}

	var results []*linkResult
	enroll := func(name string) (*linkPhone, error) {
		p := &linkPhone{path: filepath.Join(dir, name+".db"), st: &linkStats{}}
		if err := p.open(); err != nil {
			return nil, err
		}
		en, err := code()
		if err != nil {
			return nil, err
		}
		p.st.reset()
		start := time.Now()
		if err := p.d.Enroll(ctx, en, "syncbench link "+name); err != nil {
			p.d.Close()
			return nil, err
		}
		r := &linkResult{Case: "enroll", Connection: "cold", Seconds: round2(time.Since(start).Seconds())}
		r.Up, r.Down, r.Trips, r.Conns = p.st.snapshot()
		results = append(results, r)
		return p, nil
	}
	step := func(s string) { fmt.Fprintf(stderr, "syncbench: link: %s…\n", s) }

	step("first sync of 50 records, warm (on the enrollment's connection)")
	p1, err := enroll("phone1")
	if err != nil {
		return err
	}
	r, err := p1.measure(ctx, "first sync, 50 records", "warm")
	p1.d.Close()
	if err != nil {
		return err
	}
	results = append(results, r)

	step("first sync of 50 records, cold (a new process after enrolling)")
	p, err := enroll("phone2")
	if err != nil {
		return err
	}
	defer func() { p.d.Close() }()
	if err := p.reopen(); err != nil {
		return err
	}
	if r, err = p.measure(ctx, "first sync, 50 records", "cold"); err != nil {
		return err
	}
	results = append(results, r)

	day := func(conn string) error {
		if err := writeVisits(other, hhs, 10, texts); err != nil {
			return err
		}
		if _, err := other.Sync(ctx); err != nil {
			return err
		}
		if err := writeVisits(p.d, hhs, 10, texts); err != nil {
			return err
		}
		if conn == "cold" {
			if err := p.reopen(); err != nil {
				return err
			}
		}
		r, err := p.measure(ctx, "a day: 10 visits up, 10 down", conn)
		if err != nil {
			return err
		}
		results = append(results, r)
		return nil
	}
	noop := func(conn string) error {
		if conn == "cold" {
			if err := p.reopen(); err != nil {
				return err
			}
		}
		r, err := p.measure(ctx, "no-op", conn)
		if err != nil {
			return err
		}
		results = append(results, r)
		return nil
	}
	step("a day's sync, cold")
	if err := day("cold"); err != nil {
		return err
	}
	step("no-op sync, warm")
	if err := noop("warm"); err != nil {
		return err
	}
	step("a day's sync, warm")
	if err := day("warm"); err != nil {
		return err
	}
	step("no-op sync, cold")
	if err := noop("cold"); err != nil {
		return err
	}
	printLink(stdout, results, cfg.jsonOut)
	for _, r := range results {
		if r.Case == "a day: 10 visits up, 10 down" && (r.Pushed != 10 || r.Pulled < 10) {
			return fmt.Errorf("link: a day's sync (%s) pushed %d and pulled %d records: want 10 and at least 10", r.Connection, r.Pushed, r.Pulled)
		}
		if r.Case == "first sync, 50 records" && r.Pulled != 50 {
			return fmt.Errorf("link: first sync (%s) pulled %d records: want 50", r.Connection, r.Pulled)
		}
	}
	return nil
}

func printLink(w io.Writer, results []*linkResult, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range results {
			enc.Encode(map[string]any{"scenario": "link", "link": r})
		}
		return
	}
	fmt.Fprintf(w, "link: %v each way, %d B/s each way; bytes are the socket's (TLS records), both directions\n", linkOneWay, linkBytesPerSec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tconnection\tround trips\tbytes up\tbytes down\tseconds\tpushed\tpulled\tcalls\tTCP conns\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.2f\t%d\t%d\t%d\t%d\t\n", r.Case, r.Connection, r.Trips, r.Up, r.Down, r.Seconds, r.Pushed, r.Pulled, r.Calls, r.Conns)
	}
	tw.Flush()
}

var errLinkAlone = errors.New("-scenario link: runs alone (it starts its own server and village); not with other scenarios, -server external or -scale")

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
