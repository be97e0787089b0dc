package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// The server under test is assembled by the same function as cmd/syncd
// (internal/syncd.Start: store, embedded NATS, server, TLS, relay, lock)
// with no backup and every rate limit off
// (as syncd -device-rate off -user-rate off -enroll-rate off -device-quota off -user-quota off). By default it runs in a child
// process (this binary re-executed), so that its CPU time and peak RSS are
// measured apart from the load generator's; -server inproc runs it in this
// process instead (the smoke test does).

// childEnv, when set, makes this binary the server child.
const childEnv = "SYNCBENCH_SERVER_DIR"

// endpoint is what a client needs to reach the server under test.
type endpoint struct {
	Addr    string `json:"addr"`
	CA      string `json:"ca"`
	Token   string `json:"token"`
	NATSURL string `json:"nats"`
	// NATSKey: the NKey seed file to connect with (syncd's own key, read
	// from its data directory); empty for an unauthenticated NATS.
	NATSKey string `json:"nats_key,omitempty"`
	PID     int    `json:"pid"`
	// trip stops the run at the first call a rate limit refused.
	trip *rateTrip
}

// benchServer is the server under test, in-process.
type benchServer struct {
	d  *syncd.Daemon
	st *store.Server
	ep endpoint
}

// serverOpts make the server one region's syncd on an external NATS
// (-scenario regions); the zero value is a syncd without a region on its
// embedded NATS.
type serverOpts struct {
	Region   string `json:"region,omitempty"`
	NATSURL  string `json:"nats,omitempty"`     // comma-separated URLs of the cluster
	Replicas int    `json:"replicas,omitempty"` // the region stream's replicas
}

// serverOptsEnv carries serverOpts to the server child (JSON).
const serverOptsEnv = "SYNCBENCH_SERVER_OPTS"

// startServer starts syncd's parts on files under dir, assembled as syncd
// does (internal/syncd), with no backup.
func startServer(ctx context.Context, dir string, logw io.Writer, o serverOpts) (*benchServer, error) {
	token := "admin-" + domain.RandomToken(10)
	cfg := syncd.Config{
		Dir:        dir,
		AdminToken: token,
		Server: func(c *server.Config) {
			c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
			c.DeviceQuota, c.UserQuota = server.NoQuota, server.NoQuota
			c.MaxStreamsPerDevice = -1
			c.FileQuota = -1 // the file bytes' daily quota off too (issue 15)
		},
		Logger: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if o.NATSURL != "" {
		regionConfig(&cfg, o)
	}
	d, err := syncd.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b := &benchServer{d: d, st: d.Store}
	b.ep = endpoint{Addr: d.Addr, CA: d.CAFingerprint, Token: token, NATSURL: d.NATSURL, NATSKey: filepath.Join(dir, "nats-syncd.nk"), PID: os.Getpid()}
	if o.NATSURL != "" { // the cluster: no NKey of syncd's own
		b.ep.NATSURL, b.ep.NATSKey = o.NATSURL, ""
	}
	return b, nil
}

// stop shuts down in syncd's order: requests, relay (after it published
// every committed change), database, NATS.
func (b *benchServer) stop() error { return b.d.Stop() }

// serverCtl is the load generator's handle on the server under test:
// metrics, profiling, stop.
type serverCtl interface {
	endpoint() endpoint
	// usage returns CPU seconds used so far and peak RSS bytes since the
	// last resetPeak.
	usage() (cpu float64, peakRSS int64)
	// measured says whether usage knows the server's figures (not for an
	// external syncd whose pid is unknown).
	measured() bool
	resetPeak()
	startProfile(path string) error
	stopProfile() error
	// commitStats returns the writer's commits (one fsync each), the jobs
	// they carried and its busy time so far; ok is false where it cannot be
	// read (an external syncd).
	commitStats() (commits, jobs uint64, busy time.Duration, ok bool)
	stop() error
	// what says what usage measures.
	what() string
}

// inproc: the server in this process.
type inprocCtl struct {
	b    *benchServer
	prof *os.File
}

func (c *inprocCtl) endpoint() endpoint { return c.b.ep }
func (c *inprocCtl) measured() bool     { return true }
func (c *inprocCtl) usage() (float64, int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	return cpu, procPeakRSS(os.Getpid(), ru.Maxrss*1024)
}
func (c *inprocCtl) resetPeak() { resetPeakRSS(os.Getpid()) }
func (c *inprocCtl) startProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	c.prof = f
	return pprof.StartCPUProfile(f)
}
func (c *inprocCtl) stopProfile() error {
	if c.prof == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := errors.Join(c.prof.Close(), writeHeapProfile(c.prof.Name()+".heap"))
	c.prof = nil
	return err
}
func (c *inprocCtl) stop() error { c.stopProfile(); return c.b.stop() }
func (c *inprocCtl) commitStats() (uint64, uint64, time.Duration, bool) {
	commits, jobs, busy := c.b.st.CommitStats()
	return commits, jobs, busy, true
}
func (c *inprocCtl) what() string {
	return "in-process server: CPU is getrusage(RUSAGE_SELF) of the whole process (server AND load generator); peak RSS is VmHWM of the whole process"
}

// procCtl: the server in a child process, steered over its stdin.
type procCtl struct {
	mu  sync.Mutex // one command at a time (the regions' sampler asks for the head)
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	ep  endpoint
}

func startChild(ctx context.Context, dir string, stderr io.Writer, o serverOpts) (*procCtl, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	if o != (serverOpts{}) {
		js, _ := json.Marshal(o)
		cmd.Env = append(cmd.Env, serverOptsEnv+"="+string(js))
	}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &procCtl{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server child did not start: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &c.ep); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server child: %q: %w", line, err)
	}
	return c, nil
}

func (c *procCtl) endpoint() endpoint { return c.ep }
func (c *procCtl) measured() bool     { return true }
func (c *procCtl) usage() (float64, int64) {
	return procCPU(c.ep.PID), procPeakRSS(c.ep.PID, 0)
}
func (c *procCtl) resetPeak() { resetPeakRSS(c.ep.PID) }

// command sends one command to the child and returns what followed "ok"
// in its answer.
func (c *procCtl) command(cmd string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return "", err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if rest, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", errors.New(line)
}
func (c *procCtl) startProfile(path string) error {
	_, err := c.command("profile-start " + path)
	return err
}
func (c *procCtl) stopProfile() error { _, err := c.command("profile-stop"); return err }
func (c *procCtl) commitStats() (uint64, uint64, time.Duration, bool) {
	out, err := c.command("commits")
	if err != nil {
		return 0, 0, 0, false
	}
	var commits, jobs uint64
	var busy time.Duration
	if _, err := fmt.Sscan(out, &commits, &jobs, &busy); err != nil {
		return 0, 0, 0, false
	}
	return commits, jobs, busy, true
}
func (c *procCtl) stop() error {
	_, err := c.command("stop")
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case werr := <-done:
		return errors.Join(err, werr)
	case <-time.After(60 * time.Second):
		c.cmd.Process.Kill()
		<-done
		return errors.Join(err, errors.New("server child did not stop in 60s: killed"))
	}
}
func (c *procCtl) what() string {
	return fmt.Sprintf("server in its own process (pid %d, syncd's parts, limits off): CPU is utime+stime from /proc/PID/stat; peak RSS is VmHWM from /proc/PID/status, reset per scenario via clear_refs", c.ep.PID)
}

// childMain runs the server child: it prints its endpoint as one JSON
// line, then obeys commands on stdin until "stop" or EOF.
func childMain(dir string) int {
	ctx := context.Background()
	var o serverOpts
	if v := os.Getenv(serverOptsEnv); v != "" {
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			fmt.Fprintf(os.Stderr, "syncbench server: %s: %v\n", serverOptsEnv, err)
			return 1
		}
	}
	b, err := startServer(ctx, dir, os.Stderr, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncbench server:", err)
		return 1
	}
	line, _ := json.Marshal(b.ep)
	fmt.Println(string(line))
	var prof *os.File
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "profile-start":
			if len(f) < 2 {
				err = errors.New("profile-start: path missing")
				break
			}
			if prof, err = os.Create(f[1]); err == nil {
				err = pprof.StartCPUProfile(prof)
			}
		case "profile-stop":
			if prof != nil {
				pprof.StopCPUProfile()
				err = errors.Join(prof.Close(), writeHeapProfile(prof.Name()+".heap"))
				prof = nil
			}
		case "heap": // the live heap now (photos: -photo-heapprofile)
			if len(f) < 2 {
				err = errors.New("heap: path missing")
				break
			}
			err = writeHeapProfile(f[1])
		case "head": // the last change committed (the region's change number)
			last, _ := b.st.LastChange()
			fmt.Println("ok", last)
			continue
		case "commits":
			commits, jobs, busy := b.st.CommitStats()
			fmt.Println("ok", commits, jobs, int64(busy))
			continue
		case "stop":
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
			}
			err := b.stop()
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			fmt.Println("ok")
			return 0
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
	// stdin closed: the parent is gone; stop cleanly.
	if err := b.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench server: stop:", err)
		return 1
	}
	return 0
}

// procCPU reads a process's user+system CPU seconds from /proc.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// procPeakRSS reads VmHWM (peak resident set) of a process, or fallback.
func procPeakRSS(pid int, fallback int64) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fallback
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return fallback
}

// resetPeakRSS resets VmHWM to the current RSS (Linux: clear_refs 5).
func resetPeakRSS(pid int) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// writeHeapProfile writes the server's live heap (after a GC) to path: what
// it holds after the scenarios (go tool pprof -sample_index=inuse_space).
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	return errors.Join(pprof.WriteHeapProfile(f), f.Close())
}
