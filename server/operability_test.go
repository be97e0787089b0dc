package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// scrape reads url over HTTP as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the value of the series of name whose labels include labels
// (counter, gauge, or a histogram's count); -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// withMetrics gives the server metrics, served over HTTP at the URL
// returned, and logs to logs if not nil.
func withMetrics(t *testing.T, logs *logBuffer) (testenv.Option, string) {
	reg := prometheus.NewRegistry()
	m := server.NewMetrics(reg)
	h := httptest.NewServer(m.Handler())
	t.Cleanup(h.Close)
	return testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
		c.Metrics = m
		if logs != nil {
			c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	}), h.URL + "/metrics"
}

// A sync moves the sync, mutation and latency metrics, read over HTTP as
// Prometheus scrapes them.
func TestMetricsCountSyncsAndMutations(t *testing.T) {
	opt, url := withMetrics(t, nil)
	e := testenv.Start(t, opt)
	e.ImportSample()
	before := scrape(t, url)
	if v := value(before, "fieldsync_syncs_total", "code", "OK"); v > 0 {
		t.Fatalf("fieldsync_syncs_total{code=OK} = %v before any sync", v)
	}
	if v := value(before, "fieldsync_mutations_total", "status", "applied"); v != 0 {
		t.Fatalf("fieldsync_mutations_total{status=applied} = %v before any sync, want a zero series", v)
	}

	phone := e.Device(testenv.Member)
	if _, err := phone.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").Set("needs", "修路")); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Create("visit", syncer.NewFields().Set("household_id", "H004").Set("visited_on", "2026-12-06").Set("needs", "不是我的戶")); err != nil {
		t.Fatal(err)
	}
	rep := testenv.Sync(t, phone)
	if rep.Applied != 1 || rep.Rejected != 1 {
		t.Fatalf("sync: %+v, want 1 applied and 1 rejected (H004 is not linked to this member)", rep)
	}
	testenv.Sync(t, phone) // nothing new: counted as a sync, not as mutations again

	after := scrape(t, url)
	if v := value(after, "fieldsync_syncs_total", "code", "OK"); v < 2 {
		t.Errorf("fieldsync_syncs_total{code=OK} = %v after two syncs", v)
	}
	if v := value(after, "fieldsync_mutations_total", "status", "applied"); v != 1 {
		t.Errorf("fieldsync_mutations_total{status=applied} = %v, want 1", v)
	}
	if v := value(after, "fieldsync_mutations_total", "status", "rejected"); v != 1 {
		t.Errorf("fieldsync_mutations_total{status=rejected} = %v, want 1", v)
	}
	if v := value(after, "fieldsync_mutation_rejections_total", "code", "permission_denied"); v != 1 {
		t.Errorf("fieldsync_mutation_rejections_total{code=permission_denied} = %v, want 1", v)
	}
	if v := value(after, "fieldsync_rpc_duration_seconds", "method", pb.SyncService_Sync_FullMethodName); v < 2 {
		t.Errorf("fieldsync_rpc_duration_seconds_count{method=Sync} = %v, want at least 2", v)
	}
	if v := value(after, "fieldsync_enrollments_total", "result", "ok"); v != 1 {
		t.Errorf("fieldsync_enrollments_total{result=ok} = %v, want 1", v)
	}
	if v := value(after, "fieldsync_store_commits_total"); v <= 0 {
		t.Errorf("fieldsync_store_commits_total = %v", v)
	}
	if v := value(after, "fieldsync_devices_enrolled"); v != 1 {
		t.Errorf("fieldsync_devices_enrolled = %v, want 1", v)
	}
	if v := value(after, "fieldsync_devices_stale", "days", "1"); v != 0 {
		t.Errorf("fieldsync_devices_stale{days=1} = %v, want 0 for a phone that just synced", v)
	}
	testenv.WaitFor(t, 10*time.Second, "relay lag 0", func() bool {
		return value(scrape(t, url), "fieldsync_relay_lag_changes") == 0
	})

	// HQ's durable consumer, which has read nothing: it lags by the whole
	// changelog.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.JS.CreateOrUpdateConsumer(ctx, domain.StreamName, jetstream.ConsumerConfig{Durable: "hq", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, url)
	last := value(fams, "fieldsync_store_last_change_seq")
	if lag := value(fams, "fieldsync_changelog_consumer_lag_messages", "consumer", "hq"); last <= 0 || lag != last {
		t.Errorf("fieldsync_changelog_consumer_lag_messages{consumer=hq} = %v, want the %v changes it has not read", lag, last)
	}
}

// Refusals are counted and logged: a missing admin credential, a bad
// enrollment code, a revoked device calling again.
func TestRefusalsCountedAndLogged(t *testing.T) {
	logs := &logBuffer{}
	opt, url := withMetrics(t, logs)
	e := testenv.Start(t, opt)
	e.ImportSample()
	ctx := context.Background()
	_, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(ctx, &pb.EnrollRequest{Code: "not-a-code"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("enroll with a bad code: %v", err)
	}
	_, err = pb.NewAdminServiceClient(e.Conn()).ListDevices(ctx, &pb.ListDevicesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("admin call without credential: %v", err)
	}

	enrolled, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(ctx, &pb.EnrollRequest{Code: e.Secret(testenv.Member)})
	if err != nil {
		t.Fatal(err)
	}
	dctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+enrolled.GetToken())
	phone := pb.NewSyncServiceClient(e.Conn())
	if _, err := phone.Sync(dctx, &pb.SyncRequest{}); err != nil {
		t.Fatal(err)
	}
	admin, actx := e.Admin()
	if _, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: enrolled.GetDeviceId()}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // a revoked phone that keeps calling
		if _, err := phone.Sync(dctx, &pb.SyncRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("sync of a revoked device: %v", err)
		}
	}

	fams := scrape(t, url)
	if v := value(fams, "fieldsync_credential_refusals_total", "reason", "revoked"); v != 3 {
		t.Errorf("fieldsync_credential_refusals_total{reason=revoked} = %v, want 3", v)
	}
	log := logs.String()
	for _, want := range []string{
		`msg="credential refused" reason=revoked method=/fieldsync.v1.SyncService/Sync`,
		`msg="credential refused" reason=admin`,
		`msg="enrollment failed"`,
	} {
		if strings.Count(log, want) != 1 {
			t.Errorf("log has %d lines with %q, want 1 (once a minute per source); log:\n%s", strings.Count(log, want), want, log)
		}
	}
	if v := value(fams, "fieldsync_enrollments_total", "result", "failed"); v != 1 {
		t.Errorf("fieldsync_enrollments_total{result=failed} = %v, want 1", v)
	}
	if v := value(fams, "fieldsync_credential_refusals_total", "reason", "admin"); v != 1 {
		t.Errorf("fieldsync_credential_refusals_total{reason=admin} = %v, want 1", v)
	}
	if v := value(fams, "fieldsync_rpc_requests_total", "method", pb.AdminService_ListDevices_FullMethodName, "code", "Unauthenticated"); v != 1 {
		t.Errorf("fieldsync_rpc_requests_total{ListDevices,Unauthenticated} = %v, want 1", v)
	}
}

// dialNoCredential connects to the server over its TLS, pinned, with no
// device or admin credential.
func dialNoCredential(t *testing.T, e *testenv.Env) *grpc.ClientConn {
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(e.Addr, e.CAFingerprint))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// The standard health check answers without a credential: SERVING while
// the server serves, NOT_SERVING once its shutdown started.
func TestHealthAnswersWithoutCredential(t *testing.T) {
	e := testenv.Start(t)
	h := healthpb.NewHealthClient(dialNoCredential(t, e))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range []string{"", "fieldsync.v1.SyncService"} {
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v, want SERVING", svc, resp.GetStatus())
		}
	}
	watch, err := h.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v; want SERVING", first, err)
	}

	e.Server.Close() // what syncd does first when it stops
	// A watcher hears NOT_SERVING, then its stream ends: it must not hold
	// the graceful stop up.
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health watch at shutdown: %v, %v; want NOT_SERVING", next, err)
	}
	if _, err := watch.Recv(); err != io.EOF {
		t.Fatalf("health watch after NOT_SERVING: %v; want the stream ended", err)
	}
	resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during shutdown: %v, want NOT_SERVING", resp.GetStatus())
	}
}

// listServices asks server reflection for the services.
func listServices(t *testing.T, conn *grpc.ClientConn) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// A Send to a stream the server already ended says io.EOF; Recv says why.
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
		return nil, err
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	st.CloseSend()
	return names, nil
}

// Reflection is off by default and lists the services, without a
// credential, when turned on.
func TestReflectionOnlyWhenEnabled(t *testing.T) {
	off := testenv.Start(t)
	if names, err := listServices(t, dialNoCredential(t, off)); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection by default: %v, %v; want Unimplemented", names, err)
	}
	on := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
		c.Reflection = true
	}))
	names, err := listServices(t, dialNoCredential(t, on))
	if err != nil {
		t.Fatalf("reflection enabled: %v", err)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"fieldsync.v1.SyncService", "fieldsync.v1.AdminService", "grpc.health.v1.Health"} {
		if !strings.Contains(got, want) {
			t.Errorf("reflection lists %q, missing %s", got, want)
		}
	}
}

// A write the database refuses reaches the device as Unavailable and is
// logged at warn with the database's error; the log is JSON when asked.
func TestServerSideErrorLoggedAtWarn(t *testing.T) {
	logs := &logBuffer{}
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}))
	e.ImportSample()
	phone := e.Device(testenv.Member)
	testenv.Sync(t, phone)

	// A real SQLite failure on demand: a trigger, added through a second
	// connection, that aborts every new change.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "fieldsync.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER fault BEFORE INSERT ON changes BEGIN SELECT RAISE(ABORT, 'injected fault: changes refused'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").Set("needs", "修路")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := phone.Sync(ctx); err == nil {
		t.Fatal("sync succeeded although the database refuses every change")
	}

	var warned, requestLine bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if rec["level"] == "WARN" && rec["method"] == pb.SyncService_Sync_FullMethodName &&
			rec["code"] == "Unavailable" && strings.Contains(rec["err"].(string), "injected fault") {
			warned = true
		}
		if rec["level"] == "DEBUG" && rec["msg"] == "rpc" && rec["code"] == "OK" && rec["method"] == pb.SyncService_Sync_FullMethodName &&
			strings.HasPrefix(rec["caller"].(string), "d") && strings.HasPrefix(rec["peer"].(string), "127.0.0.1:") {
			requestLine = true
		}
	}
	if !warned {
		t.Errorf("no warn line with the database's error for the failed sync; log:\n%s", logs.String())
	}
	if !requestLine {
		t.Errorf("no debug request line for the first sync with its device and peer; log:\n%s", logs.String())
	}
}

// BenchmarkSyncPullObserved is BenchmarkSyncPull's poll with the metrics
// off and on, and the debug request log on: what observing every call
// costs.
func BenchmarkSyncPullObserved(b *testing.B) {
	for _, mode := range []string{"metrics=off", "metrics=on", "metrics=on,log=debug"} {
		b.Run(mode, func(b *testing.B) {
			e := testenv.Start(b, testenv.WithServerConfig(func(c *server.Config) {
				c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
				if mode != "metrics=off" {
					c.Metrics = server.NewMetrics(prometheus.NewRegistry())
				}
				if strings.Contains(mode, "debug") {
					c.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
				}
			}))
			e.ImportSample()
			d := benchEnroll(b, e, testenv.Member)
			d.sync(b, nil)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d.sync(b, nil)
			}
		})
	}
}
