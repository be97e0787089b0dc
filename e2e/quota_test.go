package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// quotaClock is a wall clock that a test moves forward: the quotas count
// per calendar day (China time), and a test cannot wait for midnight.
type quotaClock struct{ offset atomic.Int64 }

func (c *quotaClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// at sets the clock to t (it runs on from there).
func (c *quotaClock) at(t time.Time) { c.offset.Store(int64(time.Until(t))) }

func (c *quotaClock) add(d time.Duration) { c.offset.Add(int64(d)) }

// quotaEnv starts a server with tiny quotas on clock, on dir (to restart).
func quotaEnv(t *testing.T, clock *quotaClock, opts ...testenv.Option) *testenv.Env {
	t.Helper()
	return testenv.Start(t, append(opts, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceQuota = server.Quota{Records: 3, Bytes: 1 << 20}
		c.UserQuota = server.Quota{Records: 5, Bytes: 1 << 20}
		c.QuotaClock = clock.now
	}))...)
}

// queueVisits queues n visits to H001 on d.
func queueVisits(t *testing.T, d *syncer.Device, n int, tag string) {
	t.Helper()
	for i := range n {
		if _, err := d.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-07").
			Set("needs", fmt.Sprintf("%s %d", tag, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// quotaSync syncs d and wants the sync to end on a daily quota.
func quotaSync(t *testing.T, d *syncer.Device) *syncer.RetryError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.Sync(ctx)
	var re *syncer.RetryError
	if !errors.As(err, &re) || !re.Quota {
		t.Fatalf("sync: got %v, want a refusal for the daily quota with a retry delay", err)
	}
	return re
}

func pending(t *testing.T, d *syncer.Device) int {
	t.Helper()
	st, err := d.Status()
	ok(t, err)
	return st.Pending
}

func serverVisits(t *testing.T, e *testenv.Env) int {
	t.Helper()
	n := 0
	for _, r := range export(t, e) {
		if r.GetKind() == pb.Kind_KIND_VISIT {
			n++
		}
	}
	return n
}

func listedDevice(t *testing.T, e *testenv.Env, d *syncer.Device) *pb.Device {
	t.Helper()
	id, err := d.Identity()
	ok(t, err)
	admin, ctx := e.Admin()
	resp, err := admin.ListDevices(ctx, &pb.ListDevicesRequest{})
	ok(t, err)
	for _, dev := range resp.GetDevices() {
		if dev.GetId() == id.DeviceID {
			return dev
		}
	}
	t.Fatalf("device %s not listed", id.DeviceID)
	return nil
}

// A device over its daily quota keeps the rest of its work, still pulls
// what others write, and pushes the rest once the day has turned; devices
// of other users sync as usual meanwhile.
func TestDeviceOverItsDailyQuotaWaitsForTheNextDayAndStillPulls(t *testing.T) {
	clock := &quotaClock{}
	// 20:00 China time: the quota day ends in four hours.
	clock.at(time.Date(2026, 12, 7, 20, 0, 0, 0, server.QuotaZone))
	e := quotaEnv(t, clock)
	e.ImportSample()
	onClock := func(o *syncer.Options) { o.Now = clock.now }
	phone := e.Device(testenv.Member, onClock)
	other := e.Device(testenv.Member2, onClock)
	sec := e.Device(testenv.Secretary, onClock)
	testenv.Sync(t, phone)
	testenv.Sync(t, sec)

	queueVisits(t, phone, 5, "busy day")
	re := quotaSync(t, phone)
	if re.After <= 3*time.Hour+50*time.Minute || re.After > 4*time.Hour {
		t.Fatalf("retry delay %v, want the time left until midnight China time (about 4h)", re.After)
	}
	if got := pending(t, phone); got != 2 {
		t.Fatalf("the phone holds %d unsent mutations, want the 2 past its quota of 3", got)
	}
	if got := serverVisits(t, e); got != 3 {
		t.Fatalf("server has %d visits, want the 3 the quota let through", got)
	}
	row := listedDevice(t, e, phone)
	if row.GetQuotaRecordsToday() != 3 || row.GetQuotaBytesToday() == 0 || row.GetQuotaRefusalsToday() < 1 || row.GetPendingCount() != 2 {
		t.Fatalf("device list: %d records, %d bytes, %d refusals today, %d pending; want 3, >0, >=1, 2",
			row.GetQuotaRecordsToday(), row.GetQuotaBytesToday(), row.GetQuotaRefusalsToday(), row.GetPendingCount())
	}
	if dev, _ := e.Server.QuotaRefusals(); dev < 1 {
		t.Fatalf("QuotaRefusals: device %d, want at least 1", dev)
	}

	// Another user's device is not affected.
	visits2 := func() {
		if _, err := other.Create("visit", syncer.NewFields().Set("household_id", "H004").Set("visited_on", "2026-12-07")); err != nil {
			t.Fatal(err)
		}
	}
	visits2()
	testenv.Sync(t, other)
	if got := pending(t, other); got != 0 {
		t.Fatalf("the other user's phone holds %d unsent mutations, want 0", got)
	}

	// The phone over its quota still receives changes: a pull-only sync.
	ok(t, sec.Update("H001", syncer.NewFields().Set("phone", "13900000009")))
	testenv.Sync(t, sec)
	quotaSync(t, phone)
	h, err := phone.Get("H001")
	ok(t, err)
	if h.Field("phone") != "13900000009" {
		t.Fatalf("the phone over its quota did not pull the secretary's change: phone %q", h.Field("phone"))
	}
	if got := pending(t, phone); got != 2 {
		t.Fatalf("the phone holds %d unsent mutations, want 2", got)
	}

	// The day turns: the rest lands.
	clock.add(4 * time.Hour)
	testenv.Sync(t, phone)
	if got := pending(t, phone); got != 0 {
		t.Fatalf("after midnight the phone still holds %d unsent mutations", got)
	}
	if got := serverVisits(t, e); got != 6 {
		t.Fatalf("server has %d visits, want 6", got)
	}
	if row := listedDevice(t, e, phone); row.GetQuotaRecordsToday() != 2 || row.GetQuotaRefusalsToday() != 0 {
		t.Fatalf("device list on the new day: %d records, %d refusals; want 2, 0", row.GetQuotaRecordsToday(), row.GetQuotaRefusalsToday())
	}
}

// The user quota counts all of a user's devices together, and the counts
// are kept in the database: a restart of syncd does not hand out a new
// day's quota.
func TestUserQuotaCountsAllTheirDevicesAndSurvivesARestart(t *testing.T) {
	clock := &quotaClock{}
	clock.at(time.Date(2026, 12, 7, 9, 0, 0, 0, server.QuotaZone))
	e := quotaEnv(t, clock)
	e.ImportSample()
	onClock := func(o *syncer.Options) { o.Now = clock.now }
	phone := e.Device(testenv.Member, onClock)
	tablet := e.Device(testenv.Member, onClock)

	queueVisits(t, phone, 3, "phone")
	testenv.Sync(t, phone) // the device quota, exactly
	e.Stop()
	e = quotaEnv(t, clock, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken))

	// The user has 2 of 5 left: the tablet's third waits.
	queueVisits(t, tablet, 3, "tablet")
	re := quotaSync(t, tablet)
	if re.After <= 14*time.Hour+50*time.Minute || re.After > 15*time.Hour {
		t.Fatalf("retry delay %v, want about 15h (until midnight China time)", re.After)
	}
	if got := pending(t, tablet); got != 1 {
		t.Fatalf("the tablet holds %d unsent mutations, want 1 (the user's quota of 5 holds 3 from the phone and 2 from it)", got)
	}
	if got := serverVisits(t, e); got != 5 {
		t.Fatalf("server has %d visits, want 5", got)
	}
	if _, user := e.Server.QuotaRefusals(); user < 1 {
		t.Fatalf("QuotaRefusals: user %d, want at least 1", user)
	}
	clock.add(15 * time.Hour)
	testenv.Sync(t, tablet)
	if got := serverVisits(t, e); got != 6 {
		t.Fatalf("server has %d visits the next day, want 6", got)
	}
}

// The byte quota holds a push back too: the mutation that crosses the line
// lands (a single large one is never held for ever), the next waits.
func TestDeviceByteQuotaHoldsTheMutationsPastIt(t *testing.T) {
	clock := &quotaClock{}
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceQuota = server.Quota{Records: 1000, Bytes: 400}
		c.UserQuota = server.NoQuota
		c.QuotaClock = clock.now
	}))
	e.ImportSample()
	phone := e.Device(testenv.Member, func(o *syncer.Options) { o.Now = clock.now })
	queueVisits(t, phone, 4, "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十")
	quotaSync(t, phone)
	if got := serverVisits(t, e); got != 2 {
		t.Fatalf("server has %d visits, want 2 (the first under 400 bytes, the second crossing it)", got)
	}
	if row := listedDevice(t, e, phone); row.GetQuotaBytesToday() <= 400 || row.GetQuotaRecordsToday() != 2 {
		t.Fatalf("device list: %d bytes, %d records today; want over 400, 2", row.GetQuotaBytesToday(), row.GetQuotaRecordsToday())
	}
	clock.add(24 * time.Hour)
	testenv.Sync(t, phone)
	if got := serverVisits(t, e); got != 4 {
		t.Fatalf("server has %d visits, want 4", got)
	}
}

// Run, the app's sync loop, does not sit out the hours until midnight when
// the daily quota holds its push: it goes on pulling when the server pokes
// it, and holds only the push.
func TestRunOverTheDailyQuotaStillPullsWhenPoked(t *testing.T) {
	clock := &quotaClock{}
	clock.at(time.Date(2026, 12, 7, 9, 0, 0, 0, server.QuotaZone))
	e := quotaEnv(t, clock)
	e.ImportSample()
	onClock := func(o *syncer.Options) { o.Now = clock.now }
	phone := e.Device(testenv.Member, onClock)
	sec := e.Device(testenv.Secretary, onClock)
	testenv.Sync(t, sec)
	queueVisits(t, phone, 4, "backlog")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- phone.Run(ctx, time.Hour) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	testenv.WaitFor(t, 20*time.Second, "the phone to push up to its quota", func() bool {
		st, err := phone.Status()
		return err == nil && st.Pending == 1 && st.LastError != ""
	})
	ok(t, sec.Update("H001", syncer.NewFields().Set("phone", "13900000010")))
	testenv.Sync(t, sec)
	testenv.WaitFor(t, 20*time.Second, "the phone over its quota to pull the secretary's change", func() bool {
		h, err := phone.Get("H001")
		return err == nil && h.Field("phone") == "13900000010"
	})
	if got := pending(t, phone); got != 1 {
		t.Fatalf("the phone holds %d unsent mutations, want 1", got)
	}
}
