package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

// The cost of the relay's checks and of a rebuild on a changelog of
// 100,000 changes (household imports, about 400 bytes a message): a
// check at start, and a rebuild from a purged stream (noticed by the
// start check, stream deleted and recreated, every change republished
// and acknowledged).
func BenchmarkRelayRebuild(b *testing.B) {
	const changes = 100_000
	e := testenv.Start(b, testenv.WithServerConfig(func(c *server.Config) { c.JetStream = nil }))
	e.ImportSample()
	for i := 0; i < changes/2000; i++ {
		addHouseholds(b, e, fmt.Sprintf("B%03d-", i), 2000)
	}
	ctx := context.Background()
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	// run runs a relay until it has published every change.
	run := func(r *server.Relay) {
		b.Helper()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
		err := r.WaitPublished(wctx, last)
		wcancel()
		cancel()
		<-done
		if err != nil {
			b.Fatal(err)
		}
	}
	run(server.NewRelay(e.Store, e.JS, log))
	b.Logf("%d changes", last)

	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := server.NewRelay(e.Store, e.JS, log).Check(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rebuild", func(b *testing.B) {
		st, err := e.JS.Stream(ctx, domain.StreamName)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			b.StopTimer()
			if err := st.Purge(ctx, jetstream.WithPurgeSequence(2)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			r := server.NewRelay(e.Store, e.JS, log)
			if err := r.Check(ctx); err != nil {
				b.Fatal(err)
			}
			run(r)
		}
		b.ReportMetric(float64(last)/(float64(b.Elapsed().Seconds())/float64(b.N)), "changes/s")
	})
}
