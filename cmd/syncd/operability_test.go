package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A variable sets a flag, the command line wins over it, and a value the
// flag refuses is reported naming the variable. Each case stops at the
// check of the address, before anything is opened.
func TestEnvironmentSetsFlags(t *testing.T) {
	run1 := func(args ...string) error {
		return run(context.Background(), args, io.Discard, io.Discard)
	}
	t.Setenv("SYNCD_LISTEN", "from-the-environment")
	err := run1()
	if err == nil || !strings.Contains(err.Error(), `-listen "from-the-environment"`) {
		t.Errorf("SYNCD_LISTEN=from-the-environment: %v; want it taken as -listen", err)
	}
	err = run1("-listen", "from-the-command-line")
	if err == nil || !strings.Contains(err.Error(), `-listen "from-the-command-line"`) {
		t.Errorf("-listen over SYNCD_LISTEN: %v; want the command line's", err)
	}

	t.Setenv("SYNCD_NATS_MAX_STORE", "lots")
	err = run1("-listen", "from-the-command-line")
	if err == nil || !strings.Contains(err.Error(), `SYNCD_NATS_MAX_STORE="lots"`) || !strings.Contains(err.Error(), "-nats-max-store") {
		t.Errorf("SYNCD_NATS_MAX_STORE=lots: %v; want an error naming the variable and the flag", err)
	}
	t.Setenv("SYNCD_NATS_MAX_STORE", "")
	t.Setenv("SYNCD_LOG_FORMAT", "yaml")
	err = run1()
	if err == nil || !strings.Contains(err.Error(), "SYNCD_LOG_FORMAT") {
		t.Errorf("SYNCD_LOG_FORMAT=yaml: %v; want an error naming the variable", err)
	}
	t.Setenv("SYNCD_LOG_FORMAT", "")
	t.Setenv("SYNCD_HQ_LISTEN", "8480")
	err = run1()
	if err == nil || !strings.Contains(err.Error(), `SYNCD_HQ_LISTEN="8480"`) || !strings.Contains(err.Error(), "-hq-listen") {
		t.Errorf("SYNCD_HQ_LISTEN=8480: %v; want an error naming the variable and the flag", err)
	}
}

// syncd -version prints the VCS revision the toolchain stamped in the
// binary (the Go toolchain stamps none in a git worktree, whose .git is a
// file: then it must say so rather than print an empty revision).
func TestVersionPrintsTheRevision(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "syncd")
	// -buildvcs=true: the environment may turn stamping off in GOFLAGS.
	if out, err := exec.Command(goCmd, "build", "-buildvcs=true", "-o", bin, "github.com/fieldsync/fieldsync/cmd/syncd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("syncd -version: %v", err)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "syncd ") || !strings.Contains(line, runtime.Version()) {
		t.Errorf("syncd -version = %q; want syncd, its version and %s", line, runtime.Version())
	}
	meta, err := exec.Command(goCmd, "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	stamped := ""
	if m := regexp.MustCompile(`(?m)^\s+build\s+vcs\.revision=(\S+)$`).FindSubmatch(meta); m != nil {
		stamped = string(m[1])
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("not in a git checkout (%v): the test needs one to know the revision", err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(root)), ".git")); err == nil && fi.IsDir() {
		head, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(head)); stamped != want || !strings.Contains(line, "revision "+want) {
			t.Errorf("syncd -version = %q (stamped %q); want revision %s", line, stamped, want)
		}
		return
	}
	t.Logf("a git worktree: the toolchain stamps no revision; checking that -version says so")
	if stamped != "" || !strings.Contains(line, "no revision stamped") {
		t.Errorf("syncd -version = %q, stamped %q; want it to say no revision was stamped", line, stamped)
	}
}

var metricsRE = regexp.MustCompile(`(?m)^syncd: metrics on (http://127\.0\.0\.1:\d+)/metrics`)

// A real syncd, configured from the environment: metrics and health on
// their own HTTP listener, health over gRPC without a credential, and JSON
// log lines.
func TestSyncdServesMetricsAndHealth(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SKIP: stops syncd with SIGTERM, which Windows processes cannot receive")
	}
	bin := testenv.BuildSyncd(t)
	data := filepath.Join(t.TempDir(), "data")
	t.Setenv("SYNCD_LOG_FORMAT", "json")
	t.Setenv("SYNCD_LOG_LEVEL", "debug")
	t.Setenv("SYNCD_METRICS_LISTEN", "127.0.0.1:0")
	t.Setenv("SYNCD_BACKUP", "off")
	p := testenv.StartSyncd(t, bin, "-data", data, "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1")
	m := metricsRE.FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no metrics line; output:\n%s", p.Output())
	}
	base := m[1]

	conn := dial(t, p.Addr, data)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health without a credential: %v, %v; want SERVING", resp, err)
	}
	if _, err := pb.NewAdminServiceClient(conn).ListDevices(ctx, &pb.ListDevicesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ListDevices without a credential: %v", err)
	}

	get := func(path string) (int, string) {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "SERVING" {
		t.Errorf("GET /healthz: %d %q; want 200 SERVING", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		`fieldsync_rpc_requests_total{code="Unauthenticated",method="/fieldsync.v1.AdminService/ListDevices"} 1`,
		`fieldsync_credential_refusals_total{reason="admin"} 1`,
		`fieldsync_rpc_duration_seconds_count{method="/grpc.health.v1.Health/Check"} 1`,
		"fieldsync_build_info{",
		"fieldsync_store_commits_total ",
		"fieldsync_relay_lag_changes 0",
		`fieldsync_devices_stale{days="7"} 0`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	p.Stop(t, syscall.SIGTERM)
	var jsonLines int
	for _, line := range strings.Split(p.Output(), "\n") {
		if line == "" || strings.HasPrefix(line, "syncd: ") {
			continue // what syncd says to its operator on stdout
		}
		var rec map[string]any
		if err := json.NewDecoder(bytes.NewReader([]byte(line))).Decode(&rec); err != nil {
			t.Errorf("log line is not JSON (SYNCD_LOG_FORMAT=json): %v: %s", err, line)
			continue
		}
		jsonLines++
	}
	if jsonLines == 0 {
		t.Errorf("no JSON log lines at debug; output:\n%s", p.Output())
	}
}
