package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Limits on what one request may carry; requests over them get
// InvalidArgument naming the limit.
const (
	MaxMutationsPerSync = 1000
	MaxCursors          = 20000
	DefaultPageSize     = 500
	MaxPageSize         = 5000
	MaxMessageBytes     = 16 << 20
)

// windowBytes is the HTTP/2 flow-control window syncd grants a client, per
// stream and per connection (see GRPCOptions).
const windowBytes = 1 << 20

// Config is what a Server needs.
type Config struct {
	Store *store.Server
	// JetStream, if set, is where the relay publishes the changelog.
	JetStream jetstream.JetStream
	// AdminTokenHash is store.HashSecret of the admin credential.
	AdminTokenHash string
	Logger         *slog.Logger

	// CallDeadline bounds every unary call but ImportOrg on the server
	// (0: DefaultCallDeadline; negative: no bound). A client's earlier
	// deadline still applies. Streams (Watch, Export) have no bound.
	CallDeadline time.Duration
	// ImportDeadline bounds ImportOrg (0: DefaultImportDeadline;
	// negative: no bound).
	ImportDeadline time.Duration
	// DeviceLimit bounds each device's SyncService calls, UserLimit those
	// of all of one user's devices together, and EnrollLimit the Enroll
	// calls from one IP address. The zero value is the default
	// (DefaultDeviceLimit, DefaultUserLimit, DefaultEnrollLimit);
	// Unlimited turns one off. A call over a limit gets ResourceExhausted
	// with a RetryInfo detail saying how long to wait.
	DeviceLimit RateLimit
	UserLimit   RateLimit
	EnrollLimit RateLimit
	// NATSAuth, if set, is the embedded NATS's users: the HQ credential
	// RPCs change its HQ users (nil: an external NATS, whose users are
	// managed there; the RPCs answer FailedPrecondition).
	NATSAuth *NATSAuth
	// StreamLimits are the changelog stream's limits (stream_limits.go).
	StreamLimits StreamLimits
	// Region is the region this server is (domain.CheckRegion; "" for
	// none; the store pins it, store.Server.Region): the relay publishes
	// to the region's stream (domain.RegionStream) and the admin import
	// takes only ids the region owns (domain.RegionOwns).
	Region string
	// MaxStreamsPerDevice caps the Watch streams one device holds open
	// (0: DefaultMaxStreamsPerDevice; negative: no cap).
	MaxStreamsPerDevice int

	// Metrics, if set, records this server's calls and reads its store
	// and relay at each scrape (NewMetrics; one Server per Metrics).
	Metrics *Metrics
	// Reflection registers gRPC server reflection (grpcurl lists and
	// describes the services without the .proto), callable without a
	// credential.
	Reflection bool
	// DeviceQuota bounds what each device pushes in a day (a calendar day
	// in China time), UserQuota what all of one user's devices push
	// together. The zero value is the default (DefaultDeviceQuota,
	// DefaultUserQuota); NoQuota turns one off. See Quota.
	DeviceQuota Quota
	UserQuota   Quota
	// QuotaClock, if set, is the quotas' clock (tests: a day passes).
	QuotaClock func() time.Time

	// Files is the store of attached files' bytes (attachments.db) that
	// AttachmentService serves; nil: the service answers Unimplemented.
	Files *store.Files
	// FileQuota is the file bytes each device may upload in a quota day
	// (0: DefaultFileQuota; negative: no quota). An upload over it gets
	// ResourceExhausted with RetryInfo, as a push over the records' quota.
	FileQuota int64
	// MaxUploadsPerDevice caps the uploads one device runs at once (0:
	// DefaultMaxUploadsPerDevice; negative: no cap).
	MaxUploadsPerDevice int
	// MaxUploads caps the uploads the whole server receives at once (0:
	// DefaultMaxUploads; negative: no cap): each holds up to
	// MaxChunksInFlight chunks and its connection's buffers in memory, so
	// the cap bounds syncd's memory however many phones upload at once.
	// An upload past it waits for a place (its device waits on the
	// answer to its start) up to UploadQueueWait, then is told to retry.
	MaxUploads int
	// UploadQueueWait is how long an upload waits for a place among
	// MaxUploads (0: DefaultUploadQueueWait).
	UploadQueueWait time.Duration
}

// Server holds syncd's services.
type Server struct {
	cfg    Config
	store  *store.Server
	hub    *hub
	relay  *Relay
	audit  *auditPublisher // nil without JetStream
	clock  *domain.Clock   // for administrators' writes
	log    *slog.Logger
	limits *limits
	quota  *quotas
	// auth remembers device credentials for a few seconds (nil: off).
	auth *authCache
	// touched: device id -> when a pull-only call last wrote its contact.
	touched sync.Map
	// versions: device id -> the app version last written for it (a
	// device sends its version once per connection; a new one is written
	// even by a call that would write nothing else).
	versions sync.Map
	// pendings: device id -> the pending count last written for it; a
	// new one is written by a pull-only call too (its health goes on the
	// changelog: store.Tx.TouchDevice).
	pendings sync.Map
	// hqMu orders reading the HQ credentials and applying them to NATS.
	hqMu sync.Mutex
	// diskFullLog rate-limits the log of writes failed on a full disk.
	diskFullLog diskFullLog
	// metrics records calls (nil: none); health is grpc.health.v1;
	// refusals rate-limits the log of refused calls (observe.go).
	metrics  *Metrics
	health   *health.Server
	refusals refusalLog
	// Files (attachments.go): the daily file bytes of a device, uploads
	// running per device, metrics.
	fileQuota int64
	uploads   *uploadSlots
	// uploadPlaces holds a token for each upload received now (nil: no
	// server-wide cap; Config.MaxUploads).
	uploadPlaces chan struct{}
	fetches      *uploadSlots
	fileMetrics  *fileMetrics
}

// New makes a Server. Call Run to start the relay and Register to serve.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Region == "" {
		cfg.Region = cfg.Store.Region() // the region the database is pinned to
	}
	s := &Server{cfg: cfg, store: cfg.Store, hub: newHub(), log: cfg.Logger,
		clock: domain.NewClock("admin", domain.HLC{}, 0, nil), limits: newLimits(&cfg), quota: newQuotas(&cfg),
		auth: newAuthCache(authCacheTTL, authCacheMax), metrics: cfg.Metrics, health: health.NewServer()}
	if cfg.Metrics != nil {
		cfg.Metrics.server.Store(s)
	}
	switch s.fileQuota = cfg.FileQuota; {
	case s.fileQuota == 0:
		s.fileQuota = DefaultFileQuota
	case s.fileQuota < 0:
		s.fileQuota = -1
	}
	s.uploads = newUploadSlots(cfg.MaxUploadsPerDevice)
	switch {
	case cfg.MaxUploads == 0:
		s.uploadPlaces = make(chan struct{}, DefaultMaxUploads)
	case cfg.MaxUploads > 0:
		s.uploadPlaces = make(chan struct{}, cfg.MaxUploads)
	}
	s.fetches = newUploadSlots(MaxFetchesPerDevice)
	s.fileMetrics = newFileMetrics(cfg.Metrics)
	if cfg.JetStream != nil {
		s.relay = NewRelay(cfg.Store, cfg.JetStream, cfg.Logger)
		s.relay.limits = cfg.StreamLimits
		s.relay.SetRegion(cfg.Region)
		s.audit = &auditPublisher{store: cfg.Store, js: cfg.JetStream, log: cfg.Logger, poke: make(chan struct{}, 1), subject: cfg.Store.AuditHeadSubject(), stream: AuditStreamFor(cfg.Region)}
	}
	if s.audit != nil {
		cfg.Store.OnAudit = func() {
			select {
			case s.audit.poke <- struct{}{}:
			default:
			}
		}
	}
	cfg.Store.OnCommit = func(last uint64, buckets []string) {
		s.hub.poke(buckets)
		if s.relay != nil {
			s.relay.Poke()
		}
	}
	return s
}

// Relay returns the changelog relay, or nil without JetStream.
func (s *Server) Relay() *Relay { return s.relay }

// GRPCOptions are the options syncd's gRPC server runs with: the
// interceptors (metrics and logs, then server deadline, then credential,
// then rate limits), message size limits, keepalive enforcement and no
// per-connection read buffer.
func (s *Server) GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryObserve, s.unaryDeadline, s.unaryAuth, s.unaryLimit),
		grpc.ChainStreamInterceptor(s.streamObserve, s.streamAuth, s.streamLimit),
		// grpc's proto codec with a 64 KiB buffer tier for file chunks
		// (attachments_codec.go).
		grpc.ForceServerCodecV2(codec{}),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		// A city's phones hold a connection each (Watch). grpc shares
		// write buffers between connections by default; a 32 KiB read
		// buffer each would still be 700 MB for 22,000 phones. Over TLS,
		// tls.Conn already buffers a decrypted record, so grpc's framer
		// reads from it directly (on plain-text loopback this costs a few
		// more reads).
		grpc.ReadBufferSize(0),
		// Fixed flow-control windows turn off grpc's bandwidth-delay
		// probing: a PING and its ack, each in a TLS record of its own,
		// after nearly every message received (syncbench burst: 549 -> 481
		// wire bytes per record with the devices' side fixed too). 1 MiB
		// is more than a sync's push; only the window is set, no buffer
		// is allocated for it.
		grpc.InitialWindowSize(windowBytes),
		grpc.InitialConnWindowSize(windowBytes),
	}
}

// Register adds the services to g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterSyncServiceServer(g, &syncService{s: s})
	pb.RegisterEnrollServiceServer(g, &enrollService{s: s})
	pb.RegisterAdminServiceServer(g, &adminService{s: s})
	pb.RegisterExportServiceServer(g, &exportService{s: s})
	pb.RegisterAttachmentServiceServer(g, &attachmentService{s: s})
	s.registerOps(g)
}

// Close ends open Watch streams so that a graceful stop does not wait for
// them, and turns health to NOT_SERVING.
func (s *Server) Close() {
	s.health.Shutdown()
	s.hub.close()
}

// RunRelay publishes the changelog, and the audit log's heads, until ctx
// ends (no-op without JetStream).
func (s *Server) RunRelay(ctx context.Context) error {
	if s.relay == nil {
		<-ctx.Done()
		return nil
	}
	done := make(chan struct{})
	go func() { defer close(done); s.audit.run(ctx) }()
	err := s.relay.Run(ctx)
	<-done
	return err
}
