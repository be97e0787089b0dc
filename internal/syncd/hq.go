package syncd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/store"
)

// DefaultHQListen is where cmd/syncd serves the HQ page unless told
// otherwise (-hq-listen). The zero Config serves none.
const DefaultHQListen = "127.0.0.1:8480"

// Durable consumer names of the read model's followers: the one syncd
// runs and the one fieldctl hq web runs by default. Each keeps its own
// place in the changelog.
const (
	HQDurableSyncd = "hq-syncd"
	HQDurableWeb   = "hq-web"
)

// The files of the HQ directory (<data>/hq for syncd).
const (
	HQModelFile = "model.db" // the read model (package hq): rebuilt from the changelog if deleted
	HQWebFile   = "web.db"   // the page's sign-in codes, sessions and audit (package web): keep it
)

// HQConfig is the read model's follower and the HQ page, as syncd runs
// them beside its own NATS and as fieldctl hq web runs them against any.
type HQConfig struct {
	// Dir holds model.db and web.db (created mode 0700).
	Dir string
	// Listen is the page's address; Listener, when set, is used instead
	// (already listening: syncd listens before it touches its data).
	Listen   string
	Listener net.Listener
	// TLS serves the page over HTTPS (its cookies Secure); nil serves
	// plain HTTP, which only a loopback address may (web.CheckPlainListen).
	TLS *tls.Config
	// JS is the JetStream the changelog is on; Durable the follower's
	// durable consumer name; Stream the stream it follows (default
	// domain.StreamName; a region's syncd passes domain.RegionStream(r),
	// an HQ over all regions domain.HQStreamName).
	JS      jetstream.JetStream
	Durable string
	Stream  string
	// Applied is told each change number the model applied (optional).
	Applied func(seq uint64)
	// Host is the name the printed address uses when Listen's host is
	// unspecified (0.0.0.0, ::); default: this machine's name.
	Host string
	// SigninHint is the command that issues a sign-in code, printed with
	// the address (default "fieldctl hq signin-code PERSON").
	SigninHint string
	// Prefix starts the lines printed on Out ("syncd: ").
	Prefix string
	Log    *slog.Logger
	Out    io.Writer
	// Files gives the page the bytes of attached files (syncd: its own
	// attachments.db, FilesOf); nil: the page lists them without showing
	// them (fieldctl hq web on its own).
	Files web.Files
}

// FilesOf is web.Files over syncd's file store.
func FilesOf(f *store.Files) web.Files { return storeFiles{f} }

type storeFiles struct{ f *store.Files }

func (s storeFiles) CopyFile(ctx context.Context, sha string, w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	_, err := s.f.CopyFile(ctx, sha, 0, cw)
	if errors.Is(err, store.ErrNotFound) {
		return cw.n, web.ErrNoFile
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// HQ is a running follower and page.
type HQ struct {
	Model *hq.Model
	Web   *web.Server
	// URL is the page's address as printed, e.g. http://127.0.0.1:8480.
	URL string
	// Addr is the address it listens on.
	Addr string

	log        *slog.Logger
	lis        net.Listener
	srv        *http.Server
	serveDone  chan error
	followStop context.CancelFunc
	followDone chan struct{}
	warmDone   chan struct{} // the coverage months' first build
	lock       *DataLock
	stopOnce   sync.Once
	stopErr    error
}

// ListenHQ listens on addr for the HQ page, refusing plain HTTP beyond
// loopback (withTLS false); flagName names the flag in errors.
func ListenHQ(flagName, addr string, withTLS bool) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%s %q: %v: want host:port, e.g. %s, or off", flagName, addr, err, DefaultHQListen)
	}
	if !withTLS {
		if err := web.CheckPlainListen(addr); err != nil {
			return nil, fmt.Errorf("%s %s: %w", flagName, addr, err)
		}
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, causeError{ListenError(flagName, addr, err, "another syncd or fieldctl hq web running?"), err}
	}
	return lis, nil
}

// causeError is an error with advice that still unwraps to its cause.
type causeError struct{ advice, cause error }

func (e causeError) Error() string { return e.advice.Error() }
func (e causeError) Unwrap() error { return e.cause }

// HQNeedsTLS says whether the page on addr is served over TLS when the
// operator gave no certificate: whenever it is not loopback.
func HQNeedsTLS(addr string) bool { return web.CheckPlainListen(addr) != nil }

// LoadHQCert loads the operator's certificate and key for the page; both
// or neither must be given.
func LoadHQCert(certFlag, certFile, keyFlag, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "":
		return nil, fmt.Errorf("%s given without %s: give the certificate (PEM) and its key", keyFlag, certFlag)
	case keyFile == "":
		return nil, fmt.Errorf("%s given without %s: give the certificate (PEM) and its key", certFlag, keyFlag)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s %s, %s %s: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// StartHQ opens the read model and the page's database in cfg.Dir, starts
// following the changelog and serves the page. It returns once the page
// listens; the follower catches up in the background.
func StartHQ(ctx context.Context, cfg HQConfig) (*HQ, error) {
	h := &HQ{log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	if err := h.start(ctx, cfg, out); err != nil {
		return nil, errors.Join(err, h.Stop())
	}
	return h, nil
}

func (h *HQ) start(ctx context.Context, cfg HQConfig, out io.Writer) error {
	h.lis = cfg.Listener
	if h.lis == nil {
		lis, err := ListenHQ("-hq-listen", cfg.Listen, cfg.TLS != nil)
		if err != nil {
			return err
		}
		h.lis = lis
	}
	h.Addr = h.lis.Addr().String()
	if cfg.TLS == nil {
		// A listener handed over is checked too: plain HTTP only on loopback.
		if err := web.CheckPlainListen(h.Addr); err != nil {
			return err
		}
	}
	if cfg.Durable == "" {
		return errors.New("HQ: no durable consumer name")
	}
	if cfg.JS == nil {
		return errors.New("HQ: no JetStream")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("HQ directory: %w", err)
	}
	// One follower per read model: two would be two writers each with
	// its own place in the changelog.
	lock, err := LockDataDir(cfg.Dir)
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("HQ directory %s is in use by another syncd or fieldctl hq web (lock %s): stop it first, or give this one another directory", cfg.Dir, lockPath(cfg.Dir))
	}
	if err != nil {
		return err
	}
	h.lock = lock
	modelPath := filepath.Join(cfg.Dir, HQModelFile)
	m, err := hq.Open(modelPath)
	if err != nil {
		return fmt.Errorf("open the HQ read model %s: %w (it is rebuilt from the changelog: move it away and start again)", modelPath, err)
	}
	h.Model = m
	ws, err := web.New(web.Config{Model: m.DB(), WebDB: filepath.Join(cfg.Dir, HQWebFile), Secure: cfg.TLS != nil,
		Log: h.log.With("component", "hq-web"), Files: cfg.Files})
	if err != nil {
		return fmt.Errorf("HQ page: %w", err)
	}
	h.Web = ws

	// The follower outlives ctx (which bounds the start only): Stop ends it.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.followStop = cancel
	h.followDone = make(chan struct{})
	go h.follow(fctx, cfg)
	// The coverage page's months are built once for the model's life
	// (about half a second a month for a whole city): build the twelve
	// its first page shows now, beside the follower, so that no page
	// waits for them. Stop waits for it.
	h.warmDone = make(chan struct{})
	go func() {
		defer close(h.warmDone)
		if n, err := m.WarmCoverage(fctx, time.Now()); err != nil && fctx.Err() == nil {
			h.log.Warn("HQ read model: building the coverage months failed; each page builds what it needs", "err", err)
		} else if n > 0 {
			h.log.Info("HQ read model: coverage months built", "months", n)
		}
	}()

	h.srv = &http.Server{
		Handler:           ws.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(h.log.With("component", "hq-http").Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
		h.srv.TLSConfig = cfg.TLS.Clone()
	}
	h.URL = scheme + "://" + printedHost(h.lis.Addr(), cfg.Host)
	lis := h.lis
	if cfg.TLS != nil {
		lis = tls.NewListener(lis, h.srv.TLSConfig)
	}
	h.serveDone = make(chan error, 1)
	go func() {
		err := h.srv.Serve(lis)
		if !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("HQ page stopped serving", "err", err)
		}
		h.serveDone <- err
	}()
	hint := cfg.SigninHint
	if hint == "" {
		hint = "fieldctl hq signin-code PERSON"
	}
	fmt.Fprintf(out, "%sHQ page %s (sign in with a code: %s)\n", cfg.Prefix, h.URL, hint)
	return nil
}

// follow runs the model's follower until ctx ends, starting it again
// after an error (NATS away, the stream not there yet).
func (h *HQ) follow(ctx context.Context, cfg HQConfig) {
	defer close(h.followDone)
	log := h.log.With("component", "hq-model", "durable", cfg.Durable)
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := h.Model.Follow(ctx, cfg.JS, hq.FollowConfig{Durable: cfg.Durable, Stream: cfg.Stream, Log: log, Applied: cfg.Applied})
		if ctx.Err() != nil {
			return
		}
		log.Warn("HQ read model: following the changelog failed; trying again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// printedHost is the host:port a browser opens: the listen address, or
// for an unspecified one (0.0.0.0) host, else this machine's name.
func printedHost(addr net.Addr, host string) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if !ta.IP.IsUnspecified() {
		return ta.String()
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Stop stops the page (requests in flight get StopTimeout to finish), then
// the follower, then closes both databases. It may be called again.
func (h *HQ) Stop() error {
	h.stopOnce.Do(func() {
		var errs []error
		if h.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
			if err := h.srv.Shutdown(ctx); err != nil {
				h.srv.Close()
			}
			cancel()
			if err := <-h.serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, fmt.Errorf("HQ page: %w", err))
			}
		} else if h.lis != nil {
			h.lis.Close()
		}
		if h.Web != nil {
			if err := h.Web.Close(); err != nil {
				errs = append(errs, fmt.Errorf("HQ page: close: %w", err))
			}
		}
		if h.followStop != nil {
			h.followStop()
			<-h.followDone
			<-h.warmDone
		}
		if h.Model != nil {
			if err := h.Model.Close(); err != nil {
				errs = append(errs, fmt.Errorf("HQ read model: close: %w", err))
			}
		}
		if h.lock != nil {
			if err := h.lock.Unlock(); err != nil {
				errs = append(errs, fmt.Errorf("unlock HQ directory: %w", err))
			}
		}
		h.stopErr = errors.Join(errs...)
	})
	return h.stopErr
}

// listenHQ listens for the HQ page (before the data directory is touched,
// like gRPC) and settles its TLS: the operator's certificate, else
// syncd's own beyond loopback (made with gRPC's), else plain HTTP.
func (d *Daemon) listenHQ() error {
	cfg := d.cfg
	if cfg.HQListen == "" {
		if cfg.HQTLSCert != "" || cfg.HQTLSKey != "" {
			return errors.New("-hq-tls-cert and -hq-tls-key are for the HQ page, which -hq-listen off turns off")
		}
		return nil
	}
	tlsCfg, err := LoadHQCert("-hq-tls-cert", cfg.HQTLSCert, "-hq-tls-key", cfg.HQTLSKey)
	if err != nil {
		return err
	}
	d.hqTLS = tlsCfg
	d.hqOwnCert = tlsCfg == nil && HQNeedsTLS(cfg.HQListen)
	lis, err := ListenHQ("-hq-listen", cfg.HQListen, tlsCfg != nil || d.hqOwnCert)
	if err != nil && cfg.HQListenIsDefault && errors.Is(err, syscall.EADDRINUSE) {
		fmt.Fprintf(d.out, "syncd: no HQ page: its default address %s is in use (another syncd?): choose another with -hq-listen, or -hq-listen off\n", cfg.HQListen)
		d.log.Warn("HQ page not served: its default address is in use; choose another with -hq-listen", "addr", cfg.HQListen)
		d.hqOwnCert, d.hqTLS = false, nil
		return nil
	}
	if err != nil {
		return err
	}
	d.hqLis = lis
	return nil
}

// startHQ starts the read model's follower on syncd's own NATS connection
// and serves the page on the listener listenHQ opened.
func (d *Daemon) startHQ(ctx context.Context) error {
	if d.hqLis == nil {
		return nil
	}
	hint := "fieldctl hq signin-code PERSON"
	if dir := filepath.Clean(d.cfg.Dir); dir != "data" {
		hint = "fieldctl hq signin-code -hq-dir " + filepath.Join(dir, "hq") + " PERSON"
	}
	host := ""
	if len(d.cfg.TLSHosts) > 0 {
		host = d.cfg.TLSHosts[0]
	}
	h, err := StartHQ(ctx, HQConfig{
		Dir:        filepath.Join(d.cfg.Dir, "hq"),
		Listener:   d.hqLis,
		TLS:        d.hqTLS,
		JS:         d.JS,
		Durable:    HQDurableSyncd,
		Stream:     domain.RegionStream(d.cfg.Region),
		Applied:    d.cfg.HQApplied,
		Host:       host,
		SigninHint: hint,
		Prefix:     "syncd: ",
		Log:        d.log,
		Out:        d.out,
		Files:      FilesOf(d.Files),
	})
	d.hqLis = nil // StartHQ closes it on error, HQ.Stop otherwise
	if err != nil {
		return err
	}
	d.HQ = h
	return nil
}
