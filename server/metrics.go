package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Metrics are syncd's Prometheus metrics, all named fieldsync_*. They live
// in the registry given to NewMetrics (not Prometheus's global one), so
// that several servers in one process (tests) keep theirs apart. Give them
// to one Server (Config.Metrics); the store and relay figures are read from
// it at each scrape. A nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	rpcs        *prometheus.CounterVec
	rpcSeconds  *prometheus.HistogramVec
	streamsOpen *prometheus.GaugeVec
	syncs       *prometheus.CounterVec
	mutations   *prometheus.CounterVec
	rejections  *prometheus.CounterVec
	quota       *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	credentials *prometheus.CounterVec
	enrollments *prometheus.CounterVec

	server atomic.Pointer[Server] // the Server whose store and relay are read at a scrape
}

// StaleDeviceDays are the thresholds of fieldsync_devices_stale: devices
// (enrolled, not revoked) whose last sync is older than that many days.
var StaleDeviceDays = []int{1, 7, 30}

// rpcBuckets span a poll on loopback (1 ms) to an import of a large org
// (minutes).
var rpcBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// NewMetrics makes syncd's metrics and registers them in reg.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		reg: reg,
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_rpc_requests_total",
			Help: "gRPC calls answered, by full method name and status code (streams counted when they end)."}, []string{"method", "code"}),
		rpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fieldsync_rpc_duration_seconds",
			Help: "Time to answer a unary gRPC call on the server, by full method name (streams are not timed: a Watch lasts as long as its phone wants).", Buckets: rpcBuckets}, []string{"method"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fieldsync_rpc_streams_open",
			Help: "gRPC streams open now (Watch, Export), by full method name."}, []string{"method"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_syncs_total",
			Help: "SyncService.Sync calls answered, by status code (OK, Unavailable, ResourceExhausted...)."}, []string{"code"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_mutations_total",
			Help: "Device mutations answered for the first time, by status: applied, conflict (applied, met a concurrent write) or rejected (retries of an answered mutation are not counted again)."}, []string{"status"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_mutation_rejections_total",
			Help: "Device mutations rejected, by rejection code (invalid_field, not_found, permission_denied...)."}, []string{"code"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_quota_refusals_total",
			Help: "Requests refused for a quota, by quota."}, []string{"quota"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_rate_limit_refusals_total",
			Help: "Requests refused by a rate limit, by limit: device, user, enroll (failed enrollments from one address) or streams (open Watch streams of one device)."}, []string{"limit"}),
		credentials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_credential_refusals_total",
			Help: "Calls refused for their credential, by reason: missing, unknown, revoked, admin (missing or wrong admin credential), not_hq (export by a device that is not HQ's), other."}, []string{"reason"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_enrollments_total",
			Help: "Enroll calls, by result: ok, failed (unknown, used, expired or malformed code), rate_limited, error (the server failed)."}, []string{"result"}),
	}
	reg.MustRegister(m.rpcs, m.rpcSeconds, m.streamsOpen, m.syncs, m.mutations, m.rejections,
		m.quota, m.rateLimited, m.credentials, m.enrollments, (*storeCollector)(m))
	// Zero series, so that rate() and alerts see a counter from the first
	// scrape rather than from its first increment.
	for _, s := range []string{"applied", "conflict", "rejected"} {
		m.mutations.WithLabelValues(s)
	}
	for _, l := range []string{"device", "user", "enroll", "streams"} {
		m.rateLimited.WithLabelValues(l)
	}
	for _, r := range []string{"ok", "failed", "rate_limited", "error"} {
		m.enrollments.WithLabelValues(r)
	}
	for _, r := range []string{"missing", "unknown", "revoked", "admin"} {
		m.credentials.WithLabelValues(r)
	}
	return m
}

// Handler serves the metrics in Prometheus's text format (mount it at
// /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// QuotaRefused counts a push refused for a daily quota, by which quota
// ("device" or "user"): fieldsync_quota_refusals_total{quota}.
// Safe on a nil *Metrics.
func (m *Metrics) QuotaRefused(quota string) {
	if m != nil {
		m.quota.WithLabelValues(quota).Inc()
	}
}

func (m *Metrics) rateLimit(limit string) {
	if m != nil {
		m.rateLimited.WithLabelValues(limit).Inc()
	}
}

func (m *Metrics) credentialRefused(reason string) {
	if m != nil {
		m.credentials.WithLabelValues(reason).Inc()
	}
}

// countMutations counts the results of mutations answered for the first
// time.
func (m *Metrics) countMutations(results []*pb.MutationResult) {
	if m == nil {
		return
	}
	for _, r := range results {
		switch r.GetStatus() {
		case pb.MutationStatus_MUTATION_STATUS_APPLIED:
			m.mutations.WithLabelValues("applied").Inc()
		case pb.MutationStatus_MUTATION_STATUS_CONFLICT:
			m.mutations.WithLabelValues("conflict").Inc()
		case pb.MutationStatus_MUTATION_STATUS_REJECTED:
			m.mutations.WithLabelValues("rejected").Inc()
			m.rejections.WithLabelValues(r.GetCode()).Inc()
		}
	}
}

// call records one finished call.
func (m *Metrics) call(method string, stream bool, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.rpcs.WithLabelValues(method, code.String()).Inc()
	if !stream {
		m.rpcSeconds.WithLabelValues(method).Observe(d.Seconds())
	}
	switch method {
	case pb.SyncService_Sync_FullMethodName:
		m.syncs.WithLabelValues(code.String()).Inc()
	case pb.EnrollService_Enroll_FullMethodName:
		m.enrollments.WithLabelValues(enrollResult(code)).Inc()
	}
}

func enrollResult(code codes.Code) string {
	switch code {
	case codes.OK:
		return "ok"
	case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument:
		return "failed"
	case codes.ResourceExhausted:
		return "rate_limited"
	}
	return "error"
}

func (m *Metrics) streamOpen(method string, delta float64) {
	if m != nil {
		m.streamsOpen.WithLabelValues(method).Add(delta)
	}
}

// storeCollector reads the store's and relay's figures at each scrape.
type storeCollector Metrics

var (
	commitsDesc = prometheus.NewDesc("fieldsync_store_commits_total",
		"Transactions the database's single writer committed (one fsync each).", nil, nil)
	writesDesc = prometheus.NewDesc("fieldsync_store_writes_total",
		"Writes (a sync's push, an enrollment, an admin change) the commits carried; writes per commit is rate(fieldsync_store_writes_total) / rate(fieldsync_store_commits_total).", nil, nil)
	busyDesc = prometheus.NewDesc("fieldsync_store_writer_busy_seconds_total",
		"Time the database's writer spent committing; its rate near 1 means the writer is the bottleneck.", nil, nil)
	lastSeqDesc = prometheus.NewDesc("fieldsync_store_last_change_seq",
		"Number of the last change committed to the database.", nil, nil)
	publishedDesc = prometheus.NewDesc("fieldsync_relay_published_seq",
		"Number of the last change the relay published to the JetStream changelog.", nil, nil)
	relayLagDesc = prometheus.NewDesc("fieldsync_relay_lag_changes",
		"Changes committed to the database but not yet published to the changelog.", nil, nil)
	staleDesc = prometheus.NewDesc("fieldsync_devices_stale",
		"Enrolled devices, not revoked, that have not synced for more than the given number of days (never synced: counted from enrollment).", []string{"days"}, nil)
	devicesDesc = prometheus.NewDesc("fieldsync_devices_enrolled",
		"Enrolled devices, not revoked.", nil, nil)
	consumerLagDesc = prometheus.NewDesc("fieldsync_changelog_consumer_lag_messages",
		"Changelog messages a consumer of the stream (HQ's durable consumers) has not acknowledged yet: not delivered plus delivered and unacknowledged.", []string{"consumer"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{commitsDesc, writesDesc, busyDesc, lastSeqDesc, publishedDesc, relayLagDesc, staleDesc, devicesDesc, consumerLagDesc} {
		ch <- d
	}
}

// staleQueryTimeout bounds the stale-device count at a scrape.
const staleQueryTimeout = 5 * time.Second

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.server.Load()
	if s == nil {
		return
	}
	commits, writes, busy := s.store.CommitStats()
	ch <- prometheus.MustNewConstMetric(commitsDesc, prometheus.CounterValue, float64(commits))
	ch <- prometheus.MustNewConstMetric(writesDesc, prometheus.CounterValue, float64(writes))
	ch <- prometheus.MustNewConstMetric(busyDesc, prometheus.CounterValue, busy.Seconds())
	last, known := s.store.LastChange()
	if known {
		ch <- prometheus.MustNewConstMetric(lastSeqDesc, prometheus.GaugeValue, float64(last))
	}
	if s.relay != nil {
		pub := s.relay.Published()
		ch <- prometheus.MustNewConstMetric(publishedDesc, prometheus.GaugeValue, float64(pub))
		if known && pub <= last {
			ch <- prometheus.MustNewConstMetric(relayLagDesc, prometheus.GaugeValue, float64(last-pub))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), staleQueryTimeout)
	defer cancel()
	c.collectConsumers(ctx, s, ch)
	now := time.Now()
	cutoffs := make([]int64, len(StaleDeviceDays))
	for i, d := range StaleDeviceDays {
		cutoffs[i] = now.Add(-time.Duration(d) * 24 * time.Hour).UnixMilli()
	}
	total, stale, err := s.store.StaleDevices(ctx, cutoffs)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(staleDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(total))
	for i, d := range StaleDeviceDays {
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, float64(stale[i]), strconv.Itoa(d))
	}
}

// collectConsumers reports how far each consumer of the changelog stream
// is behind (the stream lag HQ sees).
func (c *storeCollector) collectConsumers(ctx context.Context, s *Server, ch chan<- prometheus.Metric) {
	if s.cfg.JetStream == nil {
		return
	}
	st, err := s.cfg.JetStream.Stream(ctx, domain.RegionStream(s.cfg.Region))
	if err != nil {
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			ch <- prometheus.NewInvalidMetric(consumerLagDesc, err)
		}
		return
	}
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		ch <- prometheus.MustNewConstMetric(consumerLagDesc, prometheus.GaugeValue, float64(ci.NumPending)+float64(ci.NumAckPending), ci.Name)
	}
	if err := l.Err(); err != nil {
		ch <- prometheus.NewInvalidMetric(consumerLagDesc, err)
	}
}
