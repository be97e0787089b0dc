package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A device hammering past its rate limit is counted every time but logged
// once a minute, the next line saying how many were left out.
func TestRateLimitRefusalsLoggedOnceAMinutePerSource(t *testing.T) {
	s, now := testServer(Config{DeviceLimit: RateLimit{PerSecond: 1, Burst: 1}, UserLimit: Unlimited})
	var logs bytes.Buffer
	s.log = slog.New(slog.NewJSONHandler(&logs, nil))
	s.metrics = NewMetrics(prometheus.NewRegistry())
	s.refusals.now = func() time.Time { return *now }
	const sync = pb.SyncService_Sync_FullMethodName
	a, b := deviceCtx("dA", "U1"), deviceCtx("dB", "U2")

	refused := 0
	for range 10 {
		if s.admit(a, sync) != nil {
			refused++
		}
	}
	s.admit(b, sync)
	s.admit(b, sync) // another source: a line of its own
	if refused != 9 {
		t.Fatalf("%d of 10 calls refused, want 9 (burst 1)", refused)
	}
	var m dto.Metric
	s.metrics.rateLimited.WithLabelValues("device").(prometheus.Metric).Write(&m)
	if got := m.GetCounter().GetValue(); got != 10 {
		t.Errorf("fieldsync_rate_limit_refusals_total{limit=device} = %v, want 10", got)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"key":"dA"`) || !strings.Contains(lines[1], `"key":"dB"`) {
		t.Fatalf("want one line for dA and one for dB; got:\n%s", logs.String())
	}

	*now = now.Add(refusalLogEvery)
	logs.Reset()
	if s.admit(a, sync) == nil {
		// a minute refills the bucket: spend it, then be refused
		s.admit(a, sync)
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &rec); err != nil {
		t.Fatalf("a minute later: %v: %q", err, logs.String())
	}
	if rec["level"] != "WARN" || rec["key"] != "dA" || rec["suppressed_since_last_line"] != float64(8) {
		t.Errorf("a minute later: %v; want dA's line counting the 8 left out", rec)
	}
}
