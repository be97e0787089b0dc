package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
)

// startSyncd starts syncd on a fresh data directory, a free gRPC port and
// a free NATS port, with extra flags, and waits until it listens.
func startSyncd(t *testing.T, bin, data string, extra ...string) *testenv.SyncdProc {
	t.Helper()
	return testenv.StartSyncd(t, bin, append([]string{"-data", data, "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1", "-log-level", "warn"}, extra...)...)
}

// TestExternalSyncd runs syncbench against a real syncd process: a tiny
// city through every scenario with nothing lost or duplicated and the
// server measured by pid; a second run on the same syncd is refused (its
// database is no longer empty); and a syncd with its default rate limits
// stops the run with the advice to turn them off.
func TestExternalSyncd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs syncd processes: skipped with -short")
	}
	t.Setenv("FIELDSYNC_HQTEST_CACHE", t.TempDir()) // the year's city (-hq-year), tiny, not kept
	bin := testenv.BuildSyncd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	data := filepath.Join(t.TempDir(), "data")
	p := startSyncd(t, bin, data, "-device-rate", "off", "-user-rate", "off", "-enroll-rate", "off", "-device-quota", "off", "-user-quota", "off")
	ext := []string{"-server", "external", "-addr", p.Addr, "-syncd-data", data}

	t.Run("run", func(t *testing.T) {
		var out, errOut bytes.Buffer
		// The limits too (few rows): the JetStream one publishes to syncd's NATS.
		args := append(append([]string{}, ext...), "-syncd-pid", strconv.Itoa(p.Cmd.Process.Pid), "-dir", t.TempDir(), "-limit-rows", "300")
		for _, a := range tinyCity {
			if a != "-skip-limits" {
				args = append(args, a)
			}
		}
		if err := run(ctx, args, &out, &errOut); err != nil {
			t.Fatalf("syncbench: %v\nstderr:\n%s\nstdout:\n%s\nsyncd:\n%s", err, errOut.String(), out.String(), p.Output())
		}
		seen := checkRun(t, out.String())
		if l, _ := seen["limits"]["limits"].(map[string]any); l == nil || l["jetstream_async_publish_per_s"].(float64) == 0 {
			t.Errorf("limits not measured: %v", seen["limits"])
		}
		// The JetStream limit's scratch stream is gone: only syncd's own
		// streams remain (the changelog and the audit heads).
		url, err := os.ReadFile(filepath.Join(data, "nats.url"))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(string(url), testenv.SyncdNATS(t, data))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for n := range js.StreamNames(ctx).Name() {
			names = append(names, n)
		}
		slices.Sort(names)
		if want := []string{domain.AuditStreamName, domain.StreamName}; !slices.Equal(names, want) {
			t.Errorf("streams on syncd's NATS after the run: %q, want only syncd's own %q", names, want)
		}
		if storm := seen["storm"]; storm != nil {
			if storm["mutations"].(float64) == 0 {
				t.Errorf("storm pushed nothing: %v", storm)
			}
			if storm["server_cpu_s"] == nil || storm["server_peak_rss_mb"] == nil {
				t.Errorf("storm: server CPU or RSS not measured with -syncd-pid: %v", storm)
			}
		}
		if check := seen["check"]; check != nil && !strings.Contains(check["server_measurement"].(string), "external syncd") {
			t.Errorf("server_measurement: %v", check["server_measurement"])
		}
	})

	t.Run("not empty", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := run(ctx, append(append(append([]string{}, ext...), "-dir", t.TempDir()), tinyCity...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "fresh, empty -data directory") {
			t.Fatalf("second run on the same syncd: err %v, want a refusal naming a fresh -data directory\nstderr:\n%s", err, errOut.String())
		}
	})

	t.Run("flags", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-server", "external", "-cpuprofile", "x.prof", "-syncd-data", data}, "syncd has no profiling endpoint"},
			{[]string{"-server", "external"}, "-syncd-data is required"},
			{[]string{"-syncd-data", data}, "only with -server external"},
			{[]string{"-server", "external", "-syncd-data", t.TempDir()}, "admin credential"},
		} {
			err := run(ctx, append(tc.args, "-dir", t.TempDir()), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.want)
			}
		}
	})
	p.Stop(t, syscall.SIGTERM)

	t.Run("rate limits on", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		p := startSyncd(t, bin, data) // syncd's default limits: 5 syncs/s per device, burst 20
		defer p.Stop(t, syscall.SIGTERM)
		var out, errOut bytes.Buffer
		args := []string{"-server", "external", "-addr", p.Addr, "-syncd-data", data, "-dir", t.TempDir(),
			"-households", "20", "-members", "2", "-grids", "1", "-real", "0", "-scenario", "single", "-single-syncs", "100", "-skip-limits"}
		start := time.Now()
		err := run(ctx, args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "ResourceExhausted") || !strings.Contains(err.Error(), rateLimitAdvice) {
			t.Fatalf("against rate limits: err %v, want ResourceExhausted and %q\nstderr:\n%s", err, rateLimitAdvice, errOut.String())
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("the rate-limited run took %v to stop", d)
		}
		if errors.Is(err, context.Canceled) {
			t.Errorf("the rate limit's error is a cancellation: %v", err)
		}
	})
}

// TestUnmeasured: without a pid, the server's CPU and RSS are "–" in the
// table and null in JSON, and the output says why.
func TestUnmeasured(t *testing.T) {
	c := &externalCtl{ep: endpoint{Addr: "10.0.0.5:7443"}, pidHow: "unknown: 10.0.0.5 is not an address of this machine; pass -syncd-pid"}
	if c.measured() {
		t.Fatal("measured without a pid")
	}
	rep := &report{Results: []*result{{Scenario: "storm"}}, Measured: c.what(), Verdict: &verdict{}}
	var tbl, js bytes.Buffer
	printReport(&tbl, rep, false)
	printReport(&js, rep, true)
	if !strings.Contains(tbl.String(), "–") || !strings.Contains(tbl.String(), "not measured") {
		t.Errorf("table:\n%s", tbl.String())
	}
	if !strings.Contains(js.String(), `"server_cpu_s":null`) || !strings.Contains(js.String(), `"server_peak_rss_mb":null`) {
		t.Errorf("json:\n%s", js.String())
	}
}
