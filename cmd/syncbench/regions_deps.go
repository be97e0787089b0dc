package main

// What -scenario regions needs from the other parts of issue 16, in one
// place: a region's syncd (syncd.Config.Region, StreamReplicas: wt-core),
// the HQ read model following FIELDSYNC_HQ (hq.FollowConfig.Stream,
// hq.EnsureHQStream: wt-hq) and the NATS cluster in process
// (internal/natscluster: wt-cluster).

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/natscluster"
	"github.com/fieldsync/fieldsync/internal/syncd"
)

// The figures above assume each node's store holds every region's stream
// (2 GiB reserved each) and FIELDSYNC_HQ.

// regionConfig makes c one region's syncd on the cluster.
func regionConfig(c *syncd.Config, o serverOpts) {
	c.NATSURL, c.Region, c.StreamReplicas = o.NATSURL, o.Region, o.Replicas
	// The cluster's nodes share this machine's disk: a region's stream
	// reserves 2 GiB of each node's JetStream store (syncd's default,
	// 48 GiB, is more than the in-process nodes are given).
	c.StreamLimits.MaxBytes, c.StreamLimits.SetMaxBytes = 2<<30, true
}

// checkRegionsSupported says whether syncd, HQ and the cluster have what
// the scenario needs.
func checkRegionsSupported() error { return nil }

// followStream makes the follower read stream.
func followStream(fc *hq.FollowConfig, stream string) error {
	fc.Stream = stream
	return nil
}

// ensureHQStream creates FIELDSYNC_HQ sourcing every region's stream, as
// fieldctl hq stream does.
func ensureHQStream(ctx context.Context, js jetstream.JetStream, regions []string, replicas int) error {
	_, err := hq.EnsureHQStream(ctx, js, regions, replicas)
	return err
}

// startCluster starts the NATS JetStream cluster (internal/natscluster)
// storing under dir and waits until it serves JetStream.
func startCluster(dir string, n int) (*natscluster.Cluster, error) {
	c, err := natscluster.Start(natscluster.Config{Nodes: n, Name: "syncbench", Dir: filepath.Join(dir), MaxStore: 16 << 30})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		c.Stop()
		return nil, fmt.Errorf("%d nodes: %w", n, err)
	}
	return c, nil
}
