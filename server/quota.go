package server

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Quota bounds what devices push in one quota day: Records mutations and
// Bytes of them (their size as received). A zero field takes the default's
// value; a negative Records turns the quota off.
//
// A push is applied in order up to the quota; the mutations past it stay on
// the device (they are not answered) and land on a later day. A push of
// which nothing fits is refused with ResourceExhausted, a RetryInfo detail
// (the time until the quota day ends) and an ErrorInfo detail (reason
// QuotaReason). Calls that push nothing (pulls) are never refused by a
// quota: a device over its quota still receives every change.
//
// A mutation fits while the count is under Records and the bytes under
// Bytes: the one that crosses the byte line is let through, so a single
// mutation larger than the whole quota is not held for ever.
type Quota struct {
	Records int
	Bytes   int64
}

// NoQuota turns a quota off.
var NoQuota = Quota{Records: -1}

// Default quotas, sized from the work (see README, "Quotas"): a member
// writes a few dozen records on a busy day and a phone back from weeks
// without signal carries a few hundred; a record's mutation is a few
// hundred bytes to a few KiB. The device quota is twenty busy days, or
// several weeks of backlog; the user quota is two phones' worth.
var (
	DefaultDeviceQuota = Quota{Records: 1000, Bytes: 16 << 20}
	DefaultUserQuota   = Quota{Records: 2000, Bytes: 32 << 20}
)

// QuotaReason is the ErrorInfo reason of a push refused for a quota.
const QuotaReason = "QUOTA_EXCEEDED"

// QuotaZone is the quota day's time zone: China time (UTC+8, no daylight
// saving). Counts start again at 00:00 China time.
var QuotaZone = time.FixedZone("UTC+8", 8*3600)

func (q Quota) off() bool { return q.Records < 0 }

func (q Quota) orDefault(def Quota) Quota {
	if q.Records == 0 {
		q.Records = def.Records
	}
	if q.Bytes <= 0 {
		q.Bytes = def.Bytes
	}
	return q
}

func (q Quota) String() string {
	if q.off() {
		return "off"
	}
	return fmt.Sprintf("%d records and %s a day", q.Records, FormatBytes(q.Bytes))
}

// FormatBytes writes a byte count in KiB, MiB or GiB when it is a whole
// number of them.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// approxBytes writes a byte count for people: 12129873 is "11.6MiB".
func approxBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}

// quotas are the server's daily quotas and their refusals, from Config.
type quotas struct {
	device, user Quota
	now          func() time.Time

	refusedDevice, refusedUser atomic.Uint64 // QuotaRefusals

	logMu  sync.Mutex
	logged map[string]time.Time // device id -> last refusal logged
}

// quotaLogEvery is how often one device's quota refusals are logged.
const quotaLogEvery = 10 * time.Minute

func newQuotas(cfg *Config) *quotas {
	q := &quotas{device: cfg.DeviceQuota, user: cfg.UserQuota, now: cfg.QuotaClock, logged: map[string]time.Time{}}
	if !q.device.off() {
		q.device = q.device.orDefault(DefaultDeviceQuota)
	}
	if !q.user.off() {
		q.user = q.user.orDefault(DefaultUserQuota)
	}
	if q.now == nil {
		q.now = time.Now
	}
	return q
}

func (q *quotas) on() bool { return !q.device.off() || !q.user.off() }

// quotaDay is the quota day of t (20261207) and when it ends.
func quotaDay(t time.Time) (int, time.Time) {
	t = t.In(QuotaZone)
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d, time.Date(y, m, d+1, 0, 0, 0, 0, QuotaZone)
}

// QuotaDay is the quota day of now, as the device list shows it.
func (s *Server) QuotaDay() int {
	day, _ := quotaDay(s.quota.now())
	return day
}

// QuotaRefusals counts, since syncd started, the pushes refused
// (ResourceExhausted) because the device's (device) or its user's (user)
// daily quota was used up: for metrics. The device list shows the same
// refusals per device and day (Device.quota_refusals_today).
func (s *Server) QuotaRefusals() (device, user uint64) {
	return s.quota.refusedDevice.Load(), s.quota.refusedUser.Load()
}

// quotaPush counts one push against the quotas, inside the writer's
// transaction, from the counts stored for the day: they survive a restart
// and are exact under concurrent pushes (the writer is one).
type quotaPush struct {
	q           *quotas
	device      string
	user        string
	day         int
	ends        time.Time
	loaded      bool
	first       bool             // the device has no row for the day yet
	dev, usr    store.QuotaUsage // used, this push included
	add         store.QuotaUsage // this push
	held        int              // mutations held back
	by          string           // "device" or "user": whose quota held them
	limit       Quota
	applied     int // new mutations answered
	usedRecords int64
	usedBytes   int64
}

func (q *quotas) push(c *caller) *quotaPush {
	if !q.on() {
		return nil
	}
	day, ends := quotaDay(q.now())
	return &quotaPush{q: q, device: c.deviceID, user: c.userID, day: day, ends: ends}
}

// fits says whether the next new mutation m may be applied, and counts it
// if so.
func (p *quotaPush) fits(tx *store.Tx, m *pb.Mutation) (bool, error) {
	if p == nil {
		return true, nil
	}
	if !p.loaded {
		var found bool
		var err error
		if p.dev, p.usr, found, err = tx.QuotaUsage(p.device, p.user, p.day); err != nil {
			return false, fmt.Errorf("read quota usage of device %s: %w", p.device, err)
		}
		p.first, p.loaded = !found, true
	}
	switch {
	case over(p.q.device, p.dev):
		p.by, p.limit, p.usedRecords, p.usedBytes = "device", p.q.device, p.dev.Records, p.dev.Bytes
		return false, nil
	case over(p.q.user, p.usr):
		p.by, p.limit, p.usedRecords, p.usedBytes = "user", p.q.user, p.usr.Records, p.usr.Bytes
		return false, nil
	}
	n := int64(proto.Size(m))
	p.dev.Records++
	p.dev.Bytes += n
	p.usr.Records++
	p.usr.Bytes += n
	p.add.Records++
	p.add.Bytes += n
	p.applied++
	return true, nil
}

func over(q Quota, u store.QuotaUsage) bool {
	return !q.off() && (u.Records >= int64(q.Records) || u.Bytes >= q.Bytes)
}

// save stores what the push used (and a refusal, if it held anything back).
func (p *quotaPush) save(tx *store.Tx) error {
	if p == nil || (p.add.Records == 0 && p.held == 0) {
		return nil
	}
	if p.held > 0 && p.applied == 0 {
		p.add.Refusals = 1 // answered ResourceExhausted (Sync)
	}
	return tx.AddQuotaUsage(p.device, p.user, p.day, p.add, p.first)
}

// quotaRefused logs (at most every quotaLogEvery per device) a push that
// held mutations back, and counts it if nothing of it fitted (the push is
// refused; a device whose push fits in part sends the rest next, and is
// refused then).
func (s *Server) quotaRefused(c *caller, p *quotaPush) {
	q := s.quota
	switch {
	case p.applied > 0:
	case p.by == "device":
		q.refusedDevice.Add(1)
		s.metrics.QuotaRefused("device")
	default:
		q.refusedUser.Add(1)
		s.metrics.QuotaRefused("user")
	}
	now := q.now()
	q.logMu.Lock()
	last, seen := q.logged[c.deviceID]
	logIt := !seen || now.Sub(last) >= quotaLogEvery || now.Before(last)
	if logIt {
		if len(q.logged) >= 10_000 {
			clear(q.logged)
		}
		q.logged[c.deviceID] = now
	}
	q.logMu.Unlock()
	if logIt {
		s.log.Warn("quota: push held back, the mutations stay on the device until the quota day ends",
			"device", c.deviceID, "user", c.userID, "quota", p.by, "limit", p.limit.String(),
			"used_records", p.usedRecords, "used_bytes", p.usedBytes, "applied", p.applied, "held", p.held,
			"resets_at", p.ends.Format(time.RFC3339), "next_log_in", quotaLogEvery)
	}
}

// quotaStatus is the refusal of a push of which nothing fitted.
func (p *quotaPush) status(now time.Time) error {
	wait := max(ceilMs(p.ends.Sub(now)), time.Millisecond)
	who := "this device"
	if p.by == "user" {
		who = "the devices of user " + p.user + " together"
	}
	msg := fmt.Sprintf("daily quota: %s pushed %d records (%s) today, the most allowed is %v; "+
		"the %d records of this push and the rest of the unsent work are kept on the device and sync after %s China time "+
		"(the counts start again at midnight); the device still receives changes; retry in %v",
		who, p.usedRecords, approxBytes(p.usedBytes), p.limit, p.held, p.ends.Format("2006-01-02 15:04"), wait)
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)},
		&errdetails.ErrorInfo{Reason: QuotaReason, Domain: "fieldsync.v1", Metadata: map[string]string{
			"quota": p.by, "resets_at": p.ends.Format(time.RFC3339), "held": strconv.Itoa(p.held)}})
	if err != nil { // cannot happen: the details always marshal
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// addQuotaUsage fills in the devices' usage of the current quota day.
func (s *Server) addQuotaUsage(ctx context.Context, devs []*pb.Device) error {
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.GetId()
	}
	used, err := s.store.QuotaUsageOn(ctx, s.QuotaDay(), ids)
	if err != nil {
		return err
	}
	for _, d := range devs {
		u := used[d.GetId()]
		d.QuotaRecordsToday, d.QuotaBytesToday, d.QuotaRefusalsToday = u.Records, u.Bytes, u.Refusals
	}
	return nil
}
