package syncd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fieldsync/fieldsync/internal/buildinfo"
	"github.com/fieldsync/fieldsync/server"
)

// metricsServer serves /metrics (Prometheus) and /healthz over plain HTTP
// on its own listener, apart from gRPC: a scraper needs no TLS client
// certificate pinning nor credential, and the listener can stay on
// loopback or a management network while gRPC faces the field.
type metricsServer struct {
	lis     net.Listener
	metrics *server.Metrics
	http    *http.Server
	done    chan error
}

// listenMetrics listens on addr for the metrics; "" is off (nil, nil). It
// runs before the data directory is touched, so that a busy port fails
// at once.
func listenMetrics(addr string) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, ListenError("-metrics-listen", addr, err, "another syncd running?")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildinfo.Read()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fieldsync_build_info",
		Help: "Always 1; the labels say which build of syncd runs."}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(bi.Version, bi.Revision, bi.Go).Set(1)
	reg.MustRegister(build)
	return &metricsServer{lis: lis, metrics: server.NewMetrics(reg)}, nil
}

// serve starts answering: /metrics and /healthz (200 SERVING, 503 while
// syncd stops).
func (m *metricsServer) serve(srv *server.Server, stdout io.Writer) {
	if m == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.metrics.Handler())
	mux.Handle("/healthz", srv.HealthHandler())
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.done = make(chan error, 1)
	fmt.Fprintf(stdout, "syncd: metrics on http://%s/metrics, health on /healthz\n", m.lis.Addr())
	go func() { m.done <- m.http.Serve(m.lis) }()
}

// close stops the listener (last: a scrape during shutdown still answers).
func (m *metricsServer) close() {
	if m == nil {
		return
	}
	if m.http == nil {
		m.lis.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.http.Shutdown(ctx); err != nil {
		m.http.Close()
	}
	<-m.done // http.ErrServerClosed
}

// metricsOf is the Metrics to give the server (nil when off).
func (m *metricsServer) metricsOf() *server.Metrics {
	if m == nil {
		return nil
	}
	return m.metrics
}
