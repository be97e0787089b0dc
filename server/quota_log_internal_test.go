package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A phone whose pushes the quota keeps refusing is logged once every ten
// minutes, not at every push, and every refusal is counted for metrics.
func TestQuotaRefusalsAreCountedAndTheirLogRateLimited(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, QuotaZone)
	var buf bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&buf, nil)), quota: newQuotas(&Config{QuotaClock: func() time.Time { return now }})}
	phone := &caller{deviceID: "D1", userID: "U1"}
	refuse := func(c *caller, by string, applied int) {
		p := s.quota.push(c)
		p.by, p.limit, p.held, p.applied = by, s.quota.device, 5, applied
		s.quotaRefused(c, p)
	}
	for range 3 {
		refuse(phone, "device", 0)
	}
	refuse(phone, "device", 2)                               // part applied: logged, not a refusal
	refuse(&caller{deviceID: "D2", userID: "U1"}, "user", 0) // another device: its own line
	if n := strings.Count(buf.String(), "quota: push held back"); n != 2 {
		t.Fatalf("%d log lines for 5 held pushes of 2 devices within a minute, want 2:\n%s", n, buf.String())
	}
	if dev, user := s.QuotaRefusals(); dev != 3 || user != 1 {
		t.Fatalf("QuotaRefusals: device %d, user %d; want 3, 1", dev, user)
	}
	now = now.Add(quotaLogEvery)
	refuse(phone, "device", 0)
	if n := strings.Count(buf.String(), "quota: push held back"); n != 3 {
		t.Fatalf("%d log lines after ten minutes, want 3", n)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "device=D1") || !strings.Contains(buf.String(), "resets_at=2026-12-08T00:00:00+08:00") {
		t.Fatalf("log line lacks its level, device or reset time:\n%s", buf.String())
	}
}
