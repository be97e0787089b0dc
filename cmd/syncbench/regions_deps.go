package main

// What -scenario regions needs from the other parts of issue 16, in one
// place: a region's syncd (syncd.Config.Region, StreamReplicas: wt-core),
// the HQ read model following FIELDSYNC_HQ (hq.FollowConfig.Stream,
// hq.EnsureHQStream: wt-hq) and the NATS cluster in process
// (internal/natscluster: wt-cluster).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/syncd"
)

var errNeedsRegions = errors.New("this build of syncbench has no regions in syncd yet (syncd.Config.Region, StreamReplicas: issue 16)")

// regionConfig makes c one region's syncd on the cluster.
func regionConfig(c *syncd.Config, o serverOpts) {
	c.NATSURL = o.NATSURL
}

// checkRegionsSupported says whether syncd, HQ and the cluster have what
// the scenario needs.
func checkRegionsSupported() error { return errNeedsRegions }

// followStream makes the follower read stream.
func followStream(fc *hq.FollowConfig, stream string) error {
	if stream != domain.StreamName {
		return fmt.Errorf("hq: following %s: %w", stream, errNeedsRegions)
	}
	return nil
}

// ensureHQStream creates FIELDSYNC_HQ sourcing every region's stream.
func ensureHQStream(ctx context.Context, js jetstream.JetStream, regions []string, replicas int) error {
	return errNeedsRegions
}

// natsCluster is the province's NATS JetStream cluster, in process.
type natsCluster struct {
	srvs []*natsserver.Server
}

// startCluster starts n JetStream nodes routed to each other, storing
// under dir, on loopback ports.
func startCluster(dir string, n int) (*natsCluster, error) {
	free := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		p, err := free()
		if err != nil {
			return nil, err
		}
		ports[i] = p
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &natsCluster{}
	for i := range n {
		store := filepath.Join(dir, fmt.Sprintf("nats-%d", i+1))
		if err := os.MkdirAll(store, 0o700); err != nil {
			c.Stop()
			return nil, err
		}
		opts := &natsserver.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: store, NoLog: true, NoSigs: true}
		opts.Cluster.Name = "syncbench"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = ports[i]
		opts.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		s, err := natsserver.NewServer(opts)
		if err != nil {
			c.Stop()
			return nil, err
		}
		go s.Start()
		c.srvs = append(c.srvs, s)
	}
	for _, s := range c.srvs {
		if !s.ReadyForConnections(30 * time.Second) {
			c.Stop()
			return nil, errors.New("nats cluster: a node is not ready after 30s")
		}
	}
	return c, nil
}

// URLs are the nodes' client URLs.
func (c *natsCluster) URLs() []string {
	var out []string
	for _, s := range c.srvs {
		out = append(out, s.ClientURL())
	}
	return out
}

// Stop shuts every node down.
func (c *natsCluster) Stop() {
	for _, s := range c.srvs {
		s.Shutdown()
		s.WaitForShutdown()
	}
}
