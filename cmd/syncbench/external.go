package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// -server external: a syncd started separately, reached at -addr, with
// its credential, CA and NATS URL read from its -data directory
// (-syncd-data). syncbench neither starts nor stops it, and cannot
// profile it; its CPU and peak RSS come from /proc when its pid is known
// (-syncd-pid, or the local process listening on -addr's port).

// rateLimitAdvice is what to do when syncd's rate limits get in the way.
const rateLimitAdvice = "start syncd with -device-rate off -user-rate off -enroll-rate off -device-quota off -user-quota off for benchmarking"

// externalCtl is the handle on a separately started syncd.
type externalCtl struct {
	ep  endpoint
	pid int // 0: unknown, no CPU or RSS figures
	// how the pid was found, or why it is unknown.
	pidHow string
	// resetErr is set when VmHWM could not be reset (another user's
	// process): peak RSS is then the peak since syncd started.
	resetErr error
}

// connectExternal reads what syncbench needs from syncd's data directory.
func connectExternal(addr, dataDir string, pid int, stderr io.Writer) (*externalCtl, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("-addr %q: %v: want syncd's -listen address, host:port", addr, err)
	}
	c := &externalCtl{ep: endpoint{Addr: addr}}
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("admin credential: %w: -syncd-data must be syncd's -data directory (syncd started with -admin-token-file keeps it elsewhere: not supported)", err)
	}
	if c.ep.Token = strings.TrimSpace(string(b)); c.ep.Token == "" {
		return nil, fmt.Errorf("admin credential %s is empty", filepath.Join(dataDir, "admin.token"))
	}
	caPath := filepath.Join(dataDir, "tls", server.CAFile)
	if c.ep.CA, err = syncer.CAFingerprintFile(caPath); err != nil {
		return nil, fmt.Errorf("syncd's CA: %w: syncbench needs syncd's TLS (is syncd running with -insecure-plaintext?)", err)
	}
	b, err = os.ReadFile(filepath.Join(dataDir, "nats.url"))
	if err != nil {
		return nil, fmt.Errorf("NATS URL: %w: syncd writes it on every start; is it running on this -data?", err)
	}
	if c.ep.NATSURL = strings.TrimSpace(string(b)); c.ep.NATSURL == "" {
		return nil, fmt.Errorf("%s is empty", filepath.Join(dataDir, "nats.url"))
	}
	// syncd's own NATS key: its embedded NATS takes no connection without one.
	if key := filepath.Join(dataDir, "nats-syncd.nk"); fileExists(key) {
		c.ep.NATSKey = key
	}

	found, ferr := findListener(addr)
	switch {
	case pid > 0:
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
			return nil, fmt.Errorf("-syncd-pid %d: no such process on this machine", pid)
		}
		c.pid, c.pidHow = pid, "given with -syncd-pid"
		if ferr == nil && found != pid {
			fmt.Fprintf(stderr, "syncbench: warning: -syncd-pid %d, but process %d listens on %s: measuring %d\n", pid, found, addr, pid)
		}
	case ferr == nil:
		c.pid, c.pidHow = found, "found listening on "+addr
	default:
		c.pidHow = "unknown: " + ferr.Error() + "; pass -syncd-pid"
	}
	c.ep.PID = c.pid
	return c, nil
}

func (c *externalCtl) endpoint() endpoint { return c.ep }
func (c *externalCtl) measured() bool     { return c.pid > 0 }
func (c *externalCtl) usage() (float64, int64) {
	if c.pid == 0 {
		return 0, 0
	}
	return procCPU(c.pid), procPeakRSS(c.pid, 0)
}
func (c *externalCtl) resetPeak() {
	if c.pid == 0 {
		return
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.pid), []byte("5"), 0); err != nil && c.resetErr == nil {
		c.resetErr = err
	}
}
func (c *externalCtl) startProfile(string) error {
	return errors.New("not available with -server external: syncd has no profiling endpoint")
}
func (c *externalCtl) stopProfile() error { return nil }
func (c *externalCtl) commitStats() (uint64, uint64, time.Duration, bool) {
	return 0, 0, 0, false // syncd does not tell
}
func (c *externalCtl) stop() error { return nil } // not ours to stop
func (c *externalCtl) what() string {
	s := fmt.Sprintf("external syncd at %s, started separately with its own flags (rate limits must be off)", c.ep.Addr)
	if c.pid == 0 {
		return s + "; its pid is " + c.pidHow + ": server CPU and peak RSS are not measured (– in the table, null in JSON)"
	}
	s += fmt.Sprintf(" (pid %d, %s): CPU is utime+stime from /proc/PID/stat; peak RSS is VmHWM from /proc/PID/status", c.pid, c.pidHow)
	if c.resetErr != nil {
		return s + fmt.Sprintf(", NOT reset per scenario (clear_refs: %v): the peak since syncd started", c.resetErr)
	}
	return s + ", reset per scenario via clear_refs"
}

// findListener returns the pid of the local process listening on addr's
// port (from /proc/net/tcp{,6} and /proc/PID/fd), for a loopback or local
// addr only.
func findListener(addr string) (int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %v", p, err)
	}
	if !isLocal(host) {
		return 0, fmt.Errorf("%s is not an address of this machine", host)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if lp, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && lp == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no local socket listens on port %d", port)
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the process listening on port %d is not visible", port)
}

func isLocal(host string) bool {
	if host == "localhost" || host == "" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// checkEmpty refuses a server that already holds devices, records or
// changelog messages: the city's import would collide with them, and the
// final check reads the changelog from its start.
func (b *bench) checkEmpty() error {
	advice := "syncbench imports a whole city and checks the changelog from its start: start syncd on a fresh, empty -data directory"
	devs, err := b.admin.ListDevices(b.actx, &pb.ListDevicesRequest{PageSize: 1})
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	if len(devs.GetDevices()) > 0 {
		return fmt.Errorf("syncd at %s already has enrolled devices: %s", b.ep.Addr, advice)
	}
	ctx, cancel := context.WithCancel(b.actx)
	defer cancel()
	stream, err := b.exportC.Export(ctx, &pb.ExportRequest{})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil && err != io.EOF {
		return fmt.Errorf("export: %w", err)
	}
	if len(resp.GetRecords()) > 0 {
		return fmt.Errorf("syncd at %s already holds records: %s", b.ep.Addr, advice)
	}
	if st, err := b.js.Stream(b.ctx, domain.StreamName); err == nil {
		info, err := st.Info(b.ctx)
		if err != nil {
			return fmt.Errorf("changelog stream: %w", err)
		}
		if info.State.Msgs > 0 {
			return fmt.Errorf("the changelog stream %s on %s already holds %d messages: %s", domain.StreamName, b.ep.NATSURL, info.State.Msgs, advice)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("changelog stream: %w", err)
	}
	return nil
}

// rateTrip notices the first call that a server rate limit refused
// (ResourceExhausted with a RetryInfo, as server/limits.go answers) and
// cancels the run: the figures would measure the limiter, not the server.
type rateTrip struct {
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

func (t *rateTrip) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		t.check(method, err)
	}
	return err
}

func (t *rateTrip) check(method string, err error) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return
	}
	limited := false
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			limited = true
		}
	}
	if !limited {
		return // e.g. a message over the size limit: an ordinary error
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = fmt.Errorf("syncd refused %s with ResourceExhausted (%s): its rate limits are on; %s", method, st.Message(), rateLimitAdvice)
		if t.cancel != nil {
			t.cancel()
		}
	}
}

// tripped is the rate-limit error, or nil.
func (t *rateTrip) tripped() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// dialOptions adds the trip to a connection's calls.
func (t *rateTrip) dialOptions() []grpc.DialOption {
	if t == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(t.unary)}
}
