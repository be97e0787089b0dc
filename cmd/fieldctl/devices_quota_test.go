package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// TestAdminDevicesShowsTodaysQuotaUse: the device list says what each
// device pushed today and how often the daily quota held it back, in the
// table and in --json.
func TestAdminDevicesShowsTodaysQuotaUse(t *testing.T) {
	noon := time.Date(2026, 12, 7, 12, 0, 0, 0, server.QuotaZone)
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceQuota = server.Quota{Records: 2, Bytes: 1 << 20}
		c.QuotaClock = func() time.Time { return noon }
	}))
	e.ImportSample()
	phone := e.Device(testenv.Member)
	for range 3 {
		if _, err := phone.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-07")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := phone.Sync(ctx); syncer.RetryAfterMillis(err) == 0 {
		t.Fatalf("sync over the quota: %v, want a retry delay", err)
	}
	tok := tokenFile(t, e)
	var devs []deviceJSON
	decode(t, ok(t, admin(e, tok, "devices", "--json")...), &devs)
	if len(devs) != 1 || devs[0].QuotaRecordsToday != 2 || devs[0].QuotaBytesToday == 0 || devs[0].QuotaRefusalsToday != 1 || devs[0].PendingCount != 1 {
		t.Fatalf("devices --json: %+v; want 2 records, some bytes, 1 refusal today and 1 pending", devs)
	}
	out := ok(t, admin(e, tok, "devices")...)
	if !strings.Contains(strings.SplitN(out, "\n", 2)[0], "TODAY") || !strings.Contains(out, "2 rec, ") || !strings.Contains(out, ", held 1") {
		t.Fatalf("devices table, want a TODAY column with 2 rec and held 1:\n%s", out)
	}
}
