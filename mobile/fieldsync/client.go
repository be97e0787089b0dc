package fieldsync

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"github.com/fieldsync/fieldsync/syncer"
)

// KeyBytes is the length of the key Open takes.
const KeyBytes = 32

// Listener is implemented by the app to hear of changes. Its methods are
// called after the change is committed, on the thread that made it (the
// caller of a write or of SyncOnce), or for foreground mode on a thread of
// its own, one call at a time, in order: post to the main thread and
// return quickly. They may call the Client, Close included.
type Listener interface {
	// OnDataChanged is called after every local write and after every sync
	// that changed what the device shows; changeJSON is a schema.Change.
	OnDataChanged(changeJSON string)
	// OnSyncState is called when a sync starts and when it ends;
	// statusJSON is a schema.Status (syncing true at the start; false,
	// with the last error and its code, at the end).
	OnSyncState(statusJSON string)
}

// Client is one device database, opened by Open (a Client made otherwise
// answers every call with code closed). Safe for concurrent use.
type Client struct {
	dev  *syncer.Device
	opts schema.Options
	// life ends at Close: a sync or an enrollment under way stops at once.
	life context.Context
	end  context.CancelFunc

	mu       sync.Mutex // guards the fields below
	closed   bool
	listener Listener
	syncing  int           // syncs running now
	fgStop   chan struct{} // closed to stop foreground mode; nil when off
	fgDone   chan struct{} // closed when the foreground goroutine ended
	fgWake   chan struct{} // a local write happened: foreground syncs soon
	network  string        // what the app said of the network (SetNetwork); "" = not said
}

// Open opens (creating) the device database at path. key is the 32-byte
// key that encrypts it at rest (kept by Android Keystore or iOS Keychain);
// nil or empty leaves the database unencrypted. A database created with a
// key opens only with that key (error code wrong_key). optionsJSON is a
// schema.Options object, "" for the defaults.
func Open(path string, key []byte, optionsJSON string) (*Client, error) {
	if path == "" {
		return nil, codef(CodeInvalid, "path: empty: want the device database's file path (in the app's private files)")
	}
	if len(key) != 0 && len(key) != KeyBytes {
		return nil, codef(CodeInvalid, "key: %d bytes: want %d bytes (or none for an unencrypted database)", len(key), KeyBytes)
	}
	opts, err := parseOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	so := &syncer.Options{
		AppVersion:     opts.AppVersion,
		PageSize:       opts.PageSize,
		ConnectTimeout: time.Duration(opts.ConnectTimeoutMs) * time.Millisecond,
	}
	if len(key) != 0 {
		so.Key = bytes.Clone(key)
	}
	c := &Client{opts: opts}
	so.HoldUploads = c.holdUploads
	dev, err := syncer.OpenWith(path, so)
	if err != nil {
		return nil, classify("open", err)
	}
	c.dev = dev
	c.life, c.end = context.WithCancel(context.Background())
	return c, nil
}

// parseOptions reads Open's options, filling in the defaults.
func parseOptions(s string) (schema.Options, error) {
	var o schema.Options
	if s != "" {
		dec := json.NewDecoder(bytes.NewReader([]byte(s)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return o, codef(CodeInvalid, "optionsJSON: %v: want an object with app_version, page_size, connect_timeout_ms, foreground_interval_ms, fetch_only_on_wifi, upload_only_on_wifi (or \"\")", err)
		}
	}
	if o.PageSize == 0 {
		o.PageSize = 500
	}
	if o.ConnectTimeoutMs == 0 {
		o.ConnectTimeoutMs = 5000
	}
	if o.ForegroundIntervalMs == 0 {
		o.ForegroundIntervalMs = 5 * 60 * 1000
	}
	switch {
	case o.PageSize < 1 || o.PageSize > 5000:
		return o, codef(CodeInvalid, "optionsJSON: page_size %d: want 1..5000 (0 = 500)", o.PageSize)
	case o.ConnectTimeoutMs < 100 || o.ConnectTimeoutMs > 120000:
		return o, codef(CodeInvalid, "optionsJSON: connect_timeout_ms %d: want 100..120000 (0 = 5000)", o.ConnectTimeoutMs)
	case o.ForegroundIntervalMs < 1000 || o.ForegroundIntervalMs > 86400000:
		return o, codef(CodeInvalid, "optionsJSON: foreground_interval_ms %d: want 1000..86400000 (0 = 300000)", o.ForegroundIntervalMs)
	case len(o.AppVersion) > 200:
		return o, codef(CodeInvalid, "optionsJSON: app_version: %d bytes: at most 200", len(o.AppVersion))
	}
	return o, nil
}

// Close stops foreground mode, closes the connection and the database.
// Calls made after it fail with code closed; a second Close does nothing.
func (c *Client) Close() error {
	c.StopForeground()
	c.mu.Lock()
	if c.closed || c.dev == nil {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.end()
	return classify("close", c.dev.Close())
}

// SetListener sets the listener (nil removes it).
func (c *Client) SetListener(l Listener) {
	c.mu.Lock()
	c.listener = l
	c.mu.Unlock()
}

// open returns errClosed once the client is closed, or for a Client not
// made by Open (gobind gives Java and Swift a constructor of the zero
// value).
func (c *Client) open() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.dev == nil {
		return errClosed
	}
	return nil
}

// classify is the package's classify, except that any error of a call
// that Close cut short is closed.
func (c *Client) classify(what string, err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return codef(CodeClosed, "the client was closed during the call (%v)", err)
	}
	return classify(what, err)
}

// marshal encodes v as the JSON a method returns.
func marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", codef(CodeInternal, "encode answer: %v", err)
	}
	return string(b), nil
}

// notifyData tells the listener, if any, of a change: at once, or
// through q when q is not nil.
func (c *Client) notifyData(q *queue, ch *schema.Change) {
	c.mu.Lock()
	l := c.listener
	c.mu.Unlock()
	if l == nil {
		return
	}
	if s, err := marshal(ch); err == nil {
		q.do(func() { l.OnDataChanged(s) })
	}
}

// notifyState tells the listener, if any, the device's status as it is
// now: at once, or through q when q is not nil.
func (c *Client) notifyState(q *queue) {
	c.mu.Lock()
	l := c.listener
	c.mu.Unlock()
	if l == nil || c.dev == nil {
		return
	}
	st, err := c.status()
	if err != nil {
		return
	}
	if s, err := marshal(st); err == nil {
		q.do(func() { l.OnSyncState(s) })
	}
}

// queue runs the listener's calls of foreground mode, in order, on a
// goroutine of their own: the foreground loop never waits for the app's
// code, so a listener may call StopForeground or Close, which wait for
// the loop to end.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	calls  []func()
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// do runs f: through the queue, or at once for a nil queue.
func (q *queue) do(f func()) {
	if q == nil {
		f()
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.calls = append(q.calls, f)
		q.cond.Signal()
	}
	q.mu.Unlock()
}

// close lets the queue's goroutine end once the calls posted are made.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) run() {
	for {
		q.mu.Lock()
		for len(q.calls) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.calls) == 0 {
			q.mu.Unlock()
			return
		}
		f := q.calls[0]
		q.calls = q.calls[1:]
		q.mu.Unlock()
		f()
	}
}
