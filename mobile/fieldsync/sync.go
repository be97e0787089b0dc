package fieldsync

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"github.com/fieldsync/fieldsync/syncer"
)

// DefaultTimeoutMillis is the time limit of Enroll and SyncOnce when they
// are given 0.
const DefaultTimeoutMillis = 30000

// timeout checks a time limit in milliseconds.
func timeout(name string, ms int64) (time.Duration, error) {
	if ms == 0 {
		ms = DefaultTimeoutMillis
	}
	if ms < 0 || ms > 3600000 {
		return 0, codef(CodeInvalid, "%s: %d ms: want 1..3600000 (0 = %d)", name, ms, DefaultTimeoutMillis)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Enroll trades the enrollment code the app scanned from the
// administrator's QR code (the text as the scanner gave it:
// fieldsync://HOST:PORT/CODE?ca=...) for this device's credential, within
// timeoutMillis (0 = 30 s). deviceName is shown in the administrator's
// device list. It pins the server's CA for good. Errors: bad_code (the
// code is malformed, used, expired or cancelled), wrong_server,
// retry_later (nothing was enrolled; the same code works again), invalid
// (deviceName), not_allowed (already enrolled).
func (c *Client) Enroll(scannedText, deviceName string, timeoutMillis int64) error {
	if err := c.open(); err != nil {
		return err
	}
	limit, err := timeout("timeoutMillis", timeoutMillis)
	if err != nil {
		return err
	}
	if _, err := syncer.ParseEnrollment(scannedText); err != nil {
		return coded(CodeBadCode, err)
	}
	if id, err := c.dev.Identity(); err == nil {
		if st, err := c.dev.Status(); err == nil && st.Stopped == "" {
			return codef(CodeNotAllowed, "already enrolled as device %s of %s: a device enrolls once (use a new database file to enroll as another)", id.DeviceID, id.UserName)
		}
	}
	ctx, cancel := context.WithTimeout(c.life, limit)
	defer cancel()
	if err := c.dev.Enroll(ctx, scannedText, deviceName); err != nil {
		return c.classify("enroll", err)
	}
	c.notifyState(nil)
	return nil
}

// SyncOnce pushes the pending writes and pulls every change in scope,
// within timeoutMillis (0 = 30 s): for Android WorkManager and iOS
// BGTaskScheduler. It returns a schema.Report as JSON. A sync cut short by
// the limit keeps what it committed (each page is committed on its own)
// and fails with retry_later; the next one resumes.
func (c *Client) SyncOnce(timeoutMillis int64) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	limit, err := timeout("timeoutMillis", timeoutMillis)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(c.life, limit)
	defer cancel()
	rep, err := c.sync(ctx, nil)
	if err != nil {
		return "", c.classify("sync", err)
	}
	return marshal(rep)
}

// sync runs one sync and tells the listener, at once or through q (from
// foreground mode). Its error is syncer's, not yet given a code.
func (c *Client) sync(ctx context.Context, q *queue) (*schema.Report, error) {
	c.mu.Lock()
	c.syncing++
	c.mu.Unlock()
	c.notifyState(q)
	start := time.Now()
	r, err := c.dev.Sync(ctx)
	rep := &schema.Report{DurationMs: time.Since(start).Milliseconds()}
	if r != nil {
		rep.Pushed, rep.Applied, rep.Conflicts, rep.Rejected = r.Pushed, r.Applied, r.Conflicts, r.Rejected
		rep.Pulled, rep.Purged, rep.Refetched, rep.Calls = r.Pulled, r.Purged, r.Refetched, r.Calls
		if f := r.Files; f != nil && (f.Uploaded > 0 || f.Refused > 0 || f.Left > 0 || f.Err != "") {
			rep.Files = toUploadReport(r.Files)
		}
	}
	// Results change the states of pending records even when no record
	// came down; a revocation wipes the device.
	rep.Changed = rep.Pushed > 0 || rep.Pulled > 0 || rep.Purged > 0 || rep.Refetched > 0 || errors.Is(err, syncer.ErrRevoked) ||
		rep.Files != nil && (rep.Files.Uploaded > 0 || rep.Files.Refused > 0)
	c.mu.Lock()
	c.syncing--
	c.mu.Unlock()
	if rep.Changed {
		c.notifyData(q, &schema.Change{Source: "sync", Report: rep})
	}
	c.notifyState(q)
	return rep, err
}

// syncLimit bounds one sync of foreground mode; minRetryWait is the least
// it waits when the server asks it to wait (syncer.Run's).
const (
	syncLimit    = 2 * time.Minute
	minRetryWait = 50 * time.Millisecond
)

// StartForeground keeps a connection to the server while the app is on
// screen: it syncs at once, after every local write, when the server
// pokes (another device's change in scope), and every
// foreground_interval_ms otherwise, backing off after failures. The
// listener hears of each sync. It ends at StopForeground or Close, or by
// itself when the device is not enrolled, revoked, a stopped copy, or the
// key is wrong (Status says why). Starting it twice does nothing.
func (c *Client) StartForeground() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.dev == nil {
		return errClosed
	}
	if c.fgStop != nil {
		select {
		case <-c.fgDone: // ended by itself: start again
		default:
			return nil
		}
	}
	if _, err := c.dev.Identity(); err != nil {
		return classify("sync", err)
	}
	c.fgStop, c.fgDone, c.fgWake = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	go c.foreground(c.fgStop, c.fgDone, c.fgWake)
	return nil
}

// StopForeground ends foreground mode and waits for its sync, if one
// runs, to stop. It does nothing when foreground mode is off.
func (c *Client) StopForeground() {
	c.mu.Lock()
	stop, done := c.fgStop, c.fgDone
	if stop != nil {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	c.fgStop, c.fgDone, c.fgWake = nil, nil, nil
	c.mu.Unlock()
	if done != nil {
		<-done
	}
	c.notifyState(nil)
}

// wakeForeground makes foreground mode sync soon after a local write.
func (c *Client) wakeForeground() {
	c.mu.Lock()
	w := c.fgWake
	c.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// foreground is foreground mode's loop (syncer.Run's policy, with the
// listener told of each sync).
func (c *Client) foreground(stop <-chan struct{}, done chan<- struct{}, wake <-chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(c.life)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	q := newQueue()
	defer q.close()
	pokes := c.dev.Pokes(ctx)
	interval := time.Duration(c.opts.ForegroundIntervalMs) * time.Millisecond
	const maxBackoff = 5 * time.Minute
	backoff := time.Second
	for {
		sctx, scancel := context.WithTimeout(ctx, syncLimit)
		_, raw := c.sync(sctx, q)
		scancel()
		err := c.classify("sync", raw)
		if ctx.Err() != nil {
			return
		}
		wait, hold := interval, false
		var retry *syncer.RetryError
		switch code := ErrorCode(errMessage(err)); {
		case err == nil:
			backoff = time.Second
		case code == CodeReenroll || code == CodeRevokedWiped || code == CodeRestoredCopy || code == CodeWrongKey || code == CodeClosed:
			return
		case errors.As(raw, &retry) && retry.Quota:
			// Over a daily quota: syncs go on but only pull until it ends.
			wait = min(interval, max(retry.After, minRetryWait))
			backoff = time.Second
		case errors.As(raw, &retry):
			// The server said how long: wait that, plus up to a tenth so a
			// user's devices do not come back together; writes and pokes
			// do not cut it short.
			wait = max(retry.After, minRetryWait)
			wait += rand.N(wait/10 + 1)
			hold, backoff = true, time.Second
		default:
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, maxBackoff)
		}
		t := time.NewTimer(wait)
		if hold {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-wake:
			t.Stop()
		case <-pokes:
			t.Stop()
		}
	}
}

func errMessage(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
