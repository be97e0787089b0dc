package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// TestRateFlags parses the rate flags through syncd's own flag set: what
// the server gets, what -h shows back, and errors that name the flag and
// say what is allowed.
func TestRateFlags(t *testing.T) {
	valid := []struct {
		flag, in string
		want     server.RateLimit
		shown    string
	}{
		{"device-rate", "5/s,burst=20", server.RateLimit{PerSecond: 5, Burst: 20}, "5/s,burst=20"},
		{"device-rate", "1/s,burst=1", server.RateLimit{PerSecond: 1, Burst: 1}, "1/s,burst=1"},
		{"device-rate", "300/m", server.RateLimit{PerSecond: 5, Burst: 20}, "300/m,burst=20"},
		{"device-rate", "0.5/s", server.RateLimit{PerSecond: 0.5, Burst: 20}, "0.5/s,burst=20"},
		{"user-rate", "0.5/s", server.RateLimit{PerSecond: 0.5, Burst: 40}, "0.5/s,burst=40"},
		{"enroll-rate", "30/m", server.RateLimit{PerSecond: 0.5, Burst: 5}, "30/m,burst=5"},
		{"enroll-rate", " 2/s , burst=3 ", server.RateLimit{PerSecond: 2, Burst: 3}, "2/s,burst=3"},
		{"device-rate", "off", server.Unlimited, "off"},
		{"user-rate", "OFF", server.Unlimited, "off"},
		{"enroll-rate", "0.1/m,burst=1", server.RateLimit{PerSecond: 0.1 / 60, Burst: 1}, "0.1/m,burst=1"},
		{"device-rate", "100000/s,burst=100000", server.RateLimit{PerSecond: 100000, Burst: 100000}, "100000/s,burst=100000"},
	}
	for _, tt := range valid {
		t.Run(tt.flag+"="+tt.in, func(t *testing.T) {
			cfg := defaultConfig()
			if err := cfg.flagSet(io.Discard).Parse([]string{"-" + tt.flag, tt.in}); err != nil {
				t.Fatalf("-%s %q: %v", tt.flag, tt.in, err)
			}
			got := map[string]*rateFlag{"device-rate": &cfg.deviceRate, "user-rate": &cfg.userRate, "enroll-rate": &cfg.enrollRate}[tt.flag]
			if got.limit() != tt.want {
				t.Errorf("-%s %q: server gets %+v, want %+v", tt.flag, tt.in, got.limit(), tt.want)
			}
			if got.String() != tt.shown {
				t.Errorf("-%s %q: shown as %q, want %q", tt.flag, tt.in, got.String(), tt.shown)
			}
		})
	}

	invalid := []struct{ in, want string }{
		{"5/x", "want N/s or N/m with an optional ,burst=B (e.g. 5/s,burst=20), or off"},
		{"5", "want N/s or N/m"},
		{"", "want N/s or N/m"},
		{"five/s", "want N/s or N/m"},
		{"5/s,20", "want N/s or N/m"},
		{"5/s,burst=", "want a whole number from 1 to 100000"},
		{"5/s,burst=0", "want a whole number from 1 to 100000"},
		{"5/s,burst=-3", "want a whole number from 1 to 100000"},
		{"5/s,burst=2.5", "want a whole number from 1 to 100000"},
		{"5/s,burst=1000000", "want a whole number from 1 to 100000"},
		{"-5/s", "negative"},
		{"0/s", "use off"},
		{"0/m,burst=3", "use off"},
		{"NaN/s", "not a finite number"},
		{"Inf/s", "not a finite number"},
		{"1e400/s", "not a finite number"},
		{"1e9/s", "out of range"},
		{"0.001/m", "out of range"},
	}
	for _, flagName := range []string{"device-rate", "user-rate", "enroll-rate"} {
		for _, tt := range invalid {
			t.Run(flagName+"="+tt.in, func(t *testing.T) {
				cfg := defaultConfig()
				var stderr bytes.Buffer
				err := cfg.flagSet(&stderr).Parse([]string{"-" + flagName, tt.in})
				if err == nil {
					t.Fatalf("-%s %q: accepted", flagName, tt.in)
				}
				if want := fmt.Sprintf("invalid value %q for flag -%s: ", tt.in, flagName); !strings.HasPrefix(err.Error(), want) {
					t.Errorf("-%s %q: %v; want it to start %q", flagName, tt.in, err, want)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("-%s %q: %v; want it to say %q", flagName, tt.in, err, tt.want)
				}
				if !strings.Contains(stderr.String(), err.Error()) {
					t.Errorf("-%s %q: the operator was not told %q; stderr:\n%s", flagName, tt.in, err, stderr.String())
				}
			})
		}
	}
}

// TestRunDeviceRate runs syncd with -device-rate and syncs twice at once
// from one enrolled device: at 1/s,burst=1 the second call must wait, and
// is told how long; with off, more calls than the default burst all pass.
func TestRunDeviceRate(t *testing.T) {
	for _, tt := range []struct {
		rate    string
		calls   int
		limited bool
	}{
		{rate: "1/s,burst=1", calls: 2, limited: true},
		{rate: "off", calls: server.DefaultDeviceLimit.Burst + 5},
	} {
		t.Run(tt.rate, func(t *testing.T) {
			addr, data, b := runSyncd(t, "-log-level", "warn", "-device-rate", tt.rate)
			token := strings.TrimSpace(string(b))
			conn := dial(t, addr, data)
			admin, actx := pb.NewAdminServiceClient(conn), withToken(token)
			if resp, err := admin.ImportOrg(actx, testenv.SampleOrg()); err != nil || len(resp.GetErrors()) > 0 {
				t.Fatalf("ImportOrg: %v, %v", resp.GetErrors(), err)
			}
			code, err := admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member})
			if err != nil {
				t.Fatalf("CreateEnrollmentCode: %v", err)
			}
			enrolled, err := pb.NewEnrollServiceClient(conn).Enroll(context.Background(), &pb.EnrollRequest{Code: code.GetCode(), DeviceName: "phone"})
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			device := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+enrolled.GetToken())

			sync := pb.NewSyncServiceClient(conn)
			for i := 1; i <= tt.calls; i++ {
				_, err := sync.Sync(device, &pb.SyncRequest{})
				last := i == tt.calls
				switch {
				case last && tt.limited:
					if status.Code(err) != codes.ResourceExhausted {
						t.Fatalf("Sync %d at -device-rate %s: %v, want ResourceExhausted", i, tt.rate, err)
					}
					if want := "at most 1 a second, bursts of 1"; !strings.Contains(err.Error(), want) {
						t.Errorf("Sync %d: %v, want it to name the limit (%q)", i, err, want)
					}
					if wait := retryDelay(err); wait <= 0 || wait > time.Second {
						t.Errorf("Sync %d: RetryInfo delay %v, want a wait of at most 1s", i, wait)
					}
				case err != nil:
					t.Fatalf("Sync %d at -device-rate %s: %v, want it served", i, tt.rate, err)
				}
			}
		})
	}
}

// retryDelay is the RetryInfo delay an error carries, or -1.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// runSyncd runs syncd (run, in this process) on a new data directory with
// a free gRPC port and embedded NATS port plus args, until the test ends;
// it returns the gRPC address, the data directory and the admin token file's
// content.
func runSyncd(t *testing.T, args ...string) (addr, data string, token []byte) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-data", data, "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1"}, args...), &stdout, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitFor(t, &stdout, listeningRE, done)
	addr = listeningRE.FindStringSubmatch(stdout.String())[1]
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return addr, data, token
}
