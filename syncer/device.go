package syncer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Errors a caller may check for.
var (
	// ErrNotEnrolled is returned by actions that need a credential.
	ErrNotEnrolled = errors.New("device not enrolled: run enroll with a code from your administrator")
	// ErrRevoked is returned when the server cut the device off; its local
	// data has been wiped.
	ErrRevoked = errors.New("device revoked by an administrator: local data wiped; enroll again with a new code")
	// ErrNotFound is returned for a record the device does not hold.
	ErrNotFound = errors.New("no such record on this device")
	// ErrCrashed is returned when Options.CrashPoint abandoned a commit.
	ErrCrashed = errors.New("simulated crash before commit")
	// ErrCloned is returned when the server found another copy of this
	// device's database syncing with the same credential (a phone copied or
	// restored onto a second phone, both in use): this copy stops syncing,
	// keeps its unsent work, and sends it once enrolled again with a new
	// code (Enroll).
	ErrCloned = errors.New("this copy of the phone's database is stopped: another copy of it syncs with the same credential " +
		"(the database was copied to or restored on a second phone); its unsent work is kept on this phone: " +
		"ask your administrator for a new enrollment code and enroll this phone again to send it")
	// ErrUnknownDevice is returned when the server does not know the
	// device's credential: its database went back to before the device
	// enrolled (a standby restored from a backup), or lost the device. The
	// phone keeps its work and stops until enrolled again; Enroll with a
	// new code then sends again its unsent work and what the lost server
	// had acknowledged (kept 30 days), numbered for the new device.
	ErrUnknownDevice = errors.New("the server does not know this phone any more (it was restored from a backup taken before the phone enrolled): " +
		"its work is kept on this phone: ask your administrator for a new enrollment code and enroll this phone again to send it")
	// ErrWrongKey is returned by OpenWith when the replica was encrypted
	// with another key, or is encrypted and no key was given.
	ErrWrongKey = errors.New("wrong key for this device database: it was encrypted with another key (or no key was given); the data cannot be read without its key")
)

// Record states, as shown to the user.
const (
	StateSynced   = 0 // the server's version, nothing pending
	StatePending  = 1 // local changes not yet acknowledged by the server
	StateRejected = 2 // the server refused a change for good; see Reason
	StateConflict = 3 // a concurrent change was kept for a person to settle
)

// StateName names a record state.
func StateName(s int) string {
	switch s {
	case StateSynced:
		return "synced"
	case StatePending:
		return "pending"
	case StateRejected:
		return "rejected"
	case StateConflict:
		return "conflict"
	}
	return "unknown"
}

// WindowBytes is the HTTP/2 flow-control window a device's connection
// grants the server (per stream and per connection). Setting it turns off
// grpc's bandwidth-delay-product probing (see dial).
const WindowBytes = 1 << 20

// Meta keys of the replica.
const (
	metaServer   = "server"
	metaCA       = "ca_fingerprint" // "" means plain text (loopback only)
	metaDeviceID = "device_id"
	metaToken    = "token"
	metaUserID   = "user_id"
	metaUserName = "user_name"
	metaRole     = "role"
	metaVillage  = "village_id"
	metaNextSeq  = "next_seq"
	metaHLC      = "hlc"
	metaOffset   = "clock_offset_ms"
	metaLastSync = "last_sync_ms"
	metaLastErr  = "last_error"
	metaChain    = "event_chain_head"
	metaReplica  = "replica_id" // this copy of the database (numbering.go)
	metaLineage  = "lineage"    // the server database's lineage at the last sync
	metaNotice   = "notice"     // what the user should know of the last renumbering
	metaStopped  = "stopped"    // "cloned": the server refused this copy; "unknown": the server does not know the device
	metaReread   = "reread"     // "1": reading the scope again after a new lineage (numbering.go)
)

// Options tune a Device; the zero value is right for a phone.
type Options struct {
	// DialOptions are added to the gRPC dial (tests use a bufconn dialer).
	DialOptions []grpc.DialOption
	// Now replaces the wall clock (simulations skew it).
	Now func() time.Time
	// AppVersion is sent to the server and shown in the device list.
	AppVersion string
	// PageSize is how many records one sync page asks for (default 500).
	PageSize int
	// ConnectTimeout bounds the wait for a connection before a sync gives
	// up and keeps the work for later (default 5s).
	ConnectTimeout time.Duration
	// CrashPoint, if set, is asked just before each local transaction
	// commits: "write" (a user's write) and "adopt" (a sync answer). If it
	// returns true the transaction is abandoned, as when the app is killed
	// there (SQLite rolls back what was not committed), and the call
	// returns ErrCrashed. For simulations; the Device should then be
	// closed and reopened, as the app would be.
	CrashPoint func(point string) bool
	// Key, when set, encrypts the replica at rest: personal data and the
	// credential are unreadable without it (the app keeps it in Android
	// Keystore or iOS Keychain). 32 bytes. A database created with a key
	// opens only with the same key (ErrWrongKey).
	Key []byte
	// HoldUploads, if set, is asked after each sync: true keeps the files
	// for later (the phone SDK's upload_only_on_wifi on a cellular
	// network); UploadPending called directly still uploads.
	HoldUploads func() bool
}

// Device is one enrolled phone: its replica, outbox and connection.
type Device struct {
	db    *store.Replica
	opts  Options
	clock *domain.Clock

	mu     sync.Mutex // guards conn and closed
	syncMu sync.Mutex // one sync at a time
	// uploadMu: one UploadPending at a time; fetchMu: one FetchAttachment
	// (attach_upload.go, attach_fetch.go).
	uploadMu, fetchMu sync.Mutex
	// filesHeld is the server's last refusal of an upload for the daily
	// file quota, filesHeldUntil when it ends (uploadMu guards both).
	filesHeld      *RetryError
	filesHeldUntil time.Time
	conn           *grpc.ClientConn
	// versionSentOn is the connection the app's version was last sent on
	// (syncMu guards it): sent once per connection.
	versionSentOn *grpc.ClientConn
	wake          chan struct{} // a local write happened: sync soon
	closed        bool

	// quotaHeld is the server's last refusal of a push for a daily quota,
	// quotaUntil when it ends (syncMu guards both): until then syncs only
	// pull (quota.go).
	quotaHeld  *RetryError
	quotaUntil time.Time
}

// Open opens (creating) the device database at path.
func Open(path string) (*Device, error) { return OpenWith(path, &Options{}) }

// OpenWith opens the device database at path with options. The file is
// created readable by its owner only (0600). With opts.Key the replica is
// encrypted at rest (store/seal.go): a new one is created encrypted, a
// plain one is encrypted in place; one encrypted with another key, or
// opened with no key, is refused with ErrWrongKey.
func OpenWith(path string, opts *Options) (*Device, error) {
	ctx := context.Background()
	if opts.Key != nil && len(opts.Key) != store.KeySize {
		return nil, fmt.Errorf("open device database %s: Options.Key is %d bytes; want %d (AES-256), or nil for a plain database", path, len(opts.Key), store.KeySize)
	}
	db, err := store.OpenReplicaKey(ctx, path, opts.Key)
	if errors.Is(err, store.ErrWrongKey) {
		return nil, fmt.Errorf("open device database: %w (%w)", ErrWrongKey, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open device database: %w", err)
	}
	d := &Device{db: db, opts: *opts, wake: make(chan struct{}, 1)}
	d.opts.Key = nil // the replica holds what it derived; keep no copy
	if d.opts.Now == nil {
		d.opts.Now = time.Now
	}
	if d.opts.ConnectTimeout == 0 {
		d.opts.ConnectTimeout = 5 * time.Second
	}
	if d.opts.AppVersion == "" {
		d.opts.AppVersion = "fieldsync-go/0.1"
	}
	if err := d.loadClock(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

func (d *Device) loadClock(ctx context.Context) error {
	return d.db.View(ctx, func(tx *store.RTx) error {
		node, err := tx.Meta(metaDeviceID)
		if err != nil {
			return err
		}
		var last domain.HLC
		if s, _ := tx.Meta(metaHLC); s != "" {
			if last, err = domain.ParseHLC(s); err != nil {
				return fmt.Errorf("device clock: %w", err)
			}
		}
		off, err := tx.MetaInt(metaOffset)
		if err != nil {
			return err
		}
		if node == "" {
			node = "unenrolled"
		}
		d.clock = domain.NewClock(node, last, time.Duration(off)*time.Millisecond, d.opts.Now)
		return nil
	})
}

// Close closes the connection and the database.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var err error
	if d.conn != nil {
		err = d.conn.Close()
		d.conn = nil
	}
	return errors.Join(err, d.db.Close())
}

// dial returns the connection to the server at addr: TLS pinned to the CA
// fingerprint ca, or plain text (loopback only) when ca is "". Over TLS
// it checks the server's certificate against the CA the replica keeps
// (tls_ca.go), and resumes the TLS session the replica keeps
// (tls_sessions.go).
func (d *Device) dial(addr, ca string) (*grpc.ClientConn, error) {
	if d.conn != nil {
		return d.conn, nil
	}
	creds := insecure.NewCredentials()
	if ca != "" {
		var held []byte
		if err := d.db.View(context.Background(), func(tx *store.RTx) error {
			var err error
			held, err = heldCA(tx)
			return err
		}); err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(deviceTLS(addr, ca, held, &replicaSessions{db: d.db}, d.keepCA))
	} else if !isLoopback(addr) {
		return nil, fmt.Errorf("no CA pinned for %s: plain text is allowed only to a loopback server", addr)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)),
		// Find a link that went dead without closing (a phone leaving
		// signal mid-call) instead of waiting on it for ever.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Fixed flow-control windows: with the defaults grpc estimates the
		// link's bandwidth-delay product by sending a PING (and getting its
		// ack) on the back of nearly every message it receives, each in a
		// TLS record of its own: 68 of the 549 bytes per record of a
		// one-mutation sync (syncbench burst). 1 MiB holds a whole page.
		grpc.WithInitialWindowSize(WindowBytes),
		grpc.WithInitialConnWindowSize(WindowBytes),
	}, d.opts.DialOptions...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	d.conn = conn
	return conn, nil
}

// ready waits, up to the connect timeout, for a connection attempt to the
// server to finish. A phone that was out of signal retries at once instead
// of waiting out gRPC's reconnect backoff. If the attempt failed, the call
// made next reports why (refused, wrong certificate, ...).
func (d *Device) ready(ctx context.Context, conn *grpc.ClientConn) error {
	conn.ResetConnectBackoff()
	conn.Connect()
	ctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()
	tried := false
	for {
		s := conn.GetState()
		switch {
		case s == connectivity.Ready:
			return nil
		case s == connectivity.TransientFailure && tried:
			return nil
		case s == connectivity.Connecting:
			tried = true
		}
		if !conn.WaitForStateChange(ctx, s) {
			if s == connectivity.TransientFailure {
				return nil
			}
			return fmt.Errorf("server %s unreachable (%v after %v): the work is kept on the device and syncs later", conn.Target(), s, d.opts.ConnectTimeout)
		}
	}
}

// Enroll trades an enrollment code (fieldsync://HOST:PORT/CODE?ca=...,
// as fieldctl admin enroll-code prints it) for this device's credential. It
// pins the server's CA for good.
func (d *Device) Enroll(ctx context.Context, enrollment, deviceName string) error {
	// The server refuses the same; checked here too so that the person
	// typing the name hears it before the code is sent.
	if err := domain.CheckDisplayText("device_name", deviceName, 200); err != nil {
		return err
	}
	en, err := ParseEnrollment(enrollment)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var existing string
	if err := d.db.View(ctx, func(tx *store.RTx) error {
		var err error
		existing, err = tx.Meta(metaDeviceID)
		return err
	}); err != nil {
		return err
	}
	var stopped string
	if existing != "" {
		if err := d.db.View(ctx, func(tx *store.RTx) error {
			var err error
			stopped, err = tx.Meta(metaStopped)
			return err
		}); err != nil {
			return err
		}
		if stopped == "" {
			return fmt.Errorf("already enrolled as device %s: use a new device database to enroll again", existing)
		}
		// A copy the server stopped as a clone enrolls again as a new
		// device, keeping its unsent work (reenroll).
		if d.conn != nil {
			d.conn.Close()
			d.conn = nil
		}
	}
	addr := en.Addr
	conn, err := d.dial(addr, en.CA)
	if err != nil {
		return err
	}
	resp, err := pb.NewEnrollServiceClient(conn).Enroll(ctx, &pb.EnrollRequest{Code: en.Code, DeviceName: deviceName, AppVersion: d.opts.AppVersion})
	if err != nil {
		conn.Close()
		d.conn = nil
		return fmt.Errorf("enroll at %s: %w", addr, describeEnroll(addr, err))
	}
	d.clock = domain.NewClock(resp.GetDeviceId(), d.clock.Last(), 0, d.opts.Now)
	return d.db.Update(ctx, func(tx *store.RTx) error {
		next := "1"
		if stopped != "" {
			touched := map[string]bool{}
			n, err := reenroll(tx, existing, resp.GetDeviceId(), stopped == stoppedUnknown, touched)
			if err != nil {
				return err
			}
			next = itoa(int64(n))
			ident, err := d.identity(tx)
			if err != nil {
				return err
			}
			ident.DeviceID, ident.UserID = resp.GetDeviceId(), resp.GetUserId()
			for id := range touched { // events chained again
				if err := d.recompute(tx, ident, id); err != nil {
					return err
				}
			}
		}
		for k, v := range map[string]string{metaServer: addr, metaCA: en.CA, metaDeviceID: resp.GetDeviceId(), metaToken: resp.GetToken(),
			metaUserID: resp.GetUserId(), metaUserName: resp.GetUserName(), metaRole: domain.RoleName(resp.GetRole()),
			metaVillage: resp.GetVillageId(), metaNextSeq: next, metaReplica: newReplicaID()} {
			if err := tx.SetMeta(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Identity is who this device is.
type Identity struct {
	Server, DeviceID, UserID, UserName, Role, VillageID string
	CAFingerprint                                       string // "" for plain text
}

func (d *Device) identity(tx *store.RTx) (*Identity, error) {
	id := &Identity{}
	for _, kv := range []struct {
		key string
		dst *string
	}{{metaServer, &id.Server}, {metaDeviceID, &id.DeviceID}, {metaUserID, &id.UserID}, {metaUserName, &id.UserName}, {metaRole, &id.Role}, {metaVillage, &id.VillageID}, {metaCA, &id.CAFingerprint}} {
		v, err := tx.Meta(kv.key)
		if err != nil {
			return nil, err
		}
		*kv.dst = v
	}
	if id.DeviceID == "" {
		return nil, ErrNotEnrolled
	}
	return id, nil
}

// Identity returns the device's enrollment, or ErrNotEnrolled.
func (d *Device) Identity() (*Identity, error) {
	var id *Identity
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		var err error
		id, err = d.identity(tx)
		return err
	})
	return id, err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// crash reports whether a simulated kill happens at point.
func (d *Device) crash(point string) bool {
	return d.opts.CrashPoint != nil && d.opts.CrashPoint(point)
}
