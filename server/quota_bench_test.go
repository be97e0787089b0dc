package server_test

import (
	"fmt"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

// BenchmarkSyncQuota is BenchmarkSync with the daily quotas on (too large
// to be met) and off: the cost of counting a push against them (two reads
// and an upsert of quota_usage in the writer's transaction).
func BenchmarkSyncQuota(b *testing.B) {
	for _, on := range []bool{false, true} {
		for _, n := range []int{1, 10} {
			b.Run(fmt.Sprintf("quota=%v/mutations=%d", map[bool]string{true: "on", false: "off"}[on], n), func(b *testing.B) {
				e := testenv.Start(b, testenv.WithServerConfig(func(c *server.Config) {
					if on {
						c.DeviceQuota = server.Quota{Records: 1 << 30, Bytes: 1 << 40}
						c.UserQuota = server.Quota{Records: 1 << 30, Bytes: 1 << 40}
					}
				}))
				e.ImportSample()
				d := benchEnroll(b, e, testenv.Member)
				d.sync(b, nil)
				b.ResetTimer()
				for b.Loop() {
					d.sync(b, d.visits(n))
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "mutations/s")
			})
		}
	}
}
