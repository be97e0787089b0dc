package server

import "github.com/prometheus/client_golang/prometheus"

// fileMetrics are the AttachmentService's metrics, registered in the
// server's Metrics registry (nil: none). Its methods are safe on nil.
type fileMetrics struct {
	bytes     *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	completes prometheus.Counter
}

func newFileMetrics(m *Metrics) *fileMetrics {
	if m == nil {
		return nil
	}
	f := &fileMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_attachment_bytes_total",
			Help: "File bytes moved by AttachmentService, by direction: upload (stored: a chunk the server already held is not counted) or fetch (sent)."}, []string{"direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fieldsync_attachment_refusals_total",
			Help: "Upload chunks and files refused, by reason: hash (a chunk damaged on the way), order (a chunk not at the end of the stored bytes), size (a chunk too large or past the file's end), type (bytes of another type than claimed), file (a whole file whose hash, size or type did not check out: dropped), quota (the device's daily file bytes), concurrency (too many uploads of one device), proof (a device that could not prove it holds a file the server has, attached through another record)."}, []string{"reason"}),
		completes: prometheus.NewCounter(prometheus.CounterOpts{Name: "fieldsync_attachment_files_completed_total",
			Help: "Files whose last byte arrived and checked out (SHA-256, size, type)."}),
	}
	m.reg.MustRegister(f.bytes, f.refusals, f.completes)
	for _, d := range []string{"upload", "fetch"} {
		f.bytes.WithLabelValues(d)
	}
	for _, r := range []string{"hash", "order", "size", "type", "file", "quota", "concurrency"} {
		f.refusals.WithLabelValues(r)
	}
	return f
}

func (f *fileMetrics) uploaded(n int) {
	if f != nil {
		f.bytes.WithLabelValues("upload").Add(float64(n))
	}
}

func (f *fileMetrics) fetched(n int) {
	if f != nil {
		f.bytes.WithLabelValues("fetch").Add(float64(n))
	}
}

func (f *fileMetrics) refused(reason string) {
	if f != nil {
		f.refusals.WithLabelValues(reason).Inc()
	}
}

func (f *fileMetrics) completed() {
	if f != nil {
		f.completes.Inc()
	}
}
