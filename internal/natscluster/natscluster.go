// Package natscluster starts a NATS JetStream cluster of N nats-servers
// in this process: each node has its own server name, client and cluster
// (route) port on loopback and JetStream store directory, and all of them
// form one cluster with one JetStream meta group. The e2e tests of regions
// (issue 16) and cmd/syncbench's regions scenario run a province's
// cluster with it; syncd connects to it as to any external NATS, with
// URLs() as its -nats value.
//
// A node can be killed (Kill: shut down at once, no lame-duck mode, as
// when its machine dies, though its stores are written out) and started
// again (Restart: same name, ports and store directory, so it rejoins
// with its raft state). The package does not import testing: it is for
// tests and for the benchmark binary alike.
package natscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Config says how to start a cluster. The zero value is a 3-node cluster
// named "fieldsync" on 127.0.0.1 with stores in a new temporary directory.
type Config struct {
	// Nodes is the number of servers (default 3; 1 runs one server with
	// JetStream unclustered: streams of 1 replica only).
	Nodes int
	// Name is the cluster name (default "fieldsync"); nodes are named
	// <Name>-1 .. <Name>-N.
	Name string
	// Host is the address every node listens on (default 127.0.0.1).
	Host string
	// Dir holds each node's store in Dir/<node name>. Empty: a new
	// temporary directory, removed by Stop.
	Dir string
	// MaxStore and MaxMemory are each node's JetStream limits in bytes
	// (default DefaultMaxStore and 64 MiB). Left to nats-server the store
	// limit is 75% of the free disk, and N nodes on one disk each count
	// the same free space. A stream with a byte limit reserves that much
	// on each node holding a replica of it (fieldsync's changelog: 48 GiB
	// a region, server.DefaultChangelogMaxBytes), whatever it holds, so
	// the limit must cover the reservations, not the data.
	MaxStore, MaxMemory int64
	// User and Password, when both are set, are required of every client;
	// URLs then carries them (nats://user:password@host:port). Routes
	// between the nodes are not authenticated (they are on Host).
	User, Password string
	// Log sends nats-server's own log lines to stderr (default off).
	Log bool
}

// Node is one server of the cluster.
type node struct {
	name        string
	dir         string
	clientPort  int
	clusterPort int
	srv         *natsserver.Server // nil while killed
}

// Cluster is a running cluster. Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	ownDir bool

	mu    sync.Mutex
	nodes []*node
}

// DefaultMaxStore is each node's JetStream store limit when Config.MaxStore
// is 0: room for the reservations of a few dozen regions' changelog
// streams (48 GiB each by default), not disk actually used.
const DefaultMaxStore int64 = 2 << 40

// startTimeout bounds how long one node may take to accept connections.
const startTimeout = 20 * time.Second

// Start starts cfg.Nodes servers and returns once each accepts client
// connections; call WaitReady before using JetStream (the meta leader is
// elected a few seconds later). On error nothing is left running.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("natscluster: Nodes %d: want 1 or more (3 for a cluster that survives a node)", cfg.Nodes)
	}
	if cfg.Name == "" {
		cfg.Name = "fieldsync"
	}
	if strings.ContainsAny(cfg.Name, " \t\n.*>") {
		return nil, fmt.Errorf("natscluster: Name %q: no spaces, dots, * or >", cfg.Name)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = 64 << 20
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("natscluster: User and Password: give both or neither")
	}
	c := &Cluster{cfg: cfg}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "natscluster-")
		if err != nil {
			return nil, fmt.Errorf("natscluster: store directory: %w", err)
		}
		c.cfg.Dir, c.ownDir = d, true
	}
	// Every node routes to every other, so the cluster ports are picked
	// first (free ports of Host, reserved and released just before the
	// nodes start: nats-server refuses a JetStream cluster whose first
	// node has no route configured). The client ports are picked by each
	// node at its first start. Both are kept, so that Restart rejoins on
	// the same addresses.
	ports, err := freePorts(c.cfg.Host, cfg.Nodes)
	if err != nil {
		c.Stop()
		return nil, err
	}
	for i := 0; i < cfg.Nodes; i++ {
		n := &node{
			name:        fmt.Sprintf("%s-%d", cfg.Name, i+1),
			clientPort:  -1,
			clusterPort: ports[i],
		}
		n.dir = filepath.Join(c.cfg.Dir, n.name)
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			c.Stop()
			return nil, fmt.Errorf("natscluster: store directory of %s: %w", n.name, err)
		}
		c.nodes = append(c.nodes, n)
	}
	for i := range c.nodes {
		if err := c.startLocked(i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// freePorts reserves n free TCP ports of host and releases them.
func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("natscluster: a free cluster port on Host %q: %w", host, err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// startLocked starts node i with routes to every other node.
func (c *Cluster) startLocked(i int) error {
	n := c.nodes[i]
	var routes []*url.URL
	for _, p := range c.nodes {
		if p == n {
			continue
		}
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(c.cfg.Host, strconv.Itoa(p.clusterPort))})
	}
	o := &natsserver.Options{
		ServerName:         n.name,
		Host:               c.cfg.Host,
		Port:               n.clientPort,
		JetStream:          true,
		StoreDir:           n.dir,
		JetStreamMaxStore:  c.cfg.MaxStore,
		JetStreamMaxMemory: c.cfg.MaxMemory,
		Username:           c.cfg.User,
		Password:           c.cfg.Password,
		NoSigs:             true,
		NoLog:              !c.cfg.Log,
	}
	if len(c.nodes) > 1 {
		// A single node runs JetStream unclustered: nats-server refuses a
		// cluster with no route to another node.
		o.Cluster = natsserver.ClusterOpts{Name: c.cfg.Name, Host: c.cfg.Host, Port: n.clusterPort}
		o.Routes = routes
	}
	s, err := natsserver.NewServer(o)
	if err != nil {
		return fmt.Errorf("natscluster: node %s: %w", n.name, err)
	}
	if c.cfg.Log {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(startTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("natscluster: node %s not accepting connections after %s (are ports %d/%d of %s free?)", n.name, startTimeout, n.clientPort, n.clusterPort, c.cfg.Host)
	}
	n.clientPort = s.Addr().(*net.TCPAddr).Port
	if a := s.ClusterAddr(); a != nil {
		n.clusterPort = a.Port
	}
	n.srv = s
	return nil
}

// Len is the number of nodes, running or killed.
func (c *Cluster) Len() int { return len(c.nodes) }

// Name is node i's server name (what JetStream reports as a leader or
// replica, e.g. in StreamInfo.Cluster).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index is the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// StoreDir is node i's JetStream store directory.
func (c *Cluster) StoreDir(i int) string { return c.nodes[i].dir }

// URL is node i's client URL (with the user and password of Config).
func (c *Cluster) URL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urlLocked(i)
}

func (c *Cluster) urlLocked(i int) string {
	u := url.URL{Scheme: "nats", Host: net.JoinHostPort(c.cfg.Host, strconv.Itoa(c.nodes[i].clientPort))}
	if c.cfg.User != "" {
		u.User = url.UserPassword(c.cfg.User, c.cfg.Password)
	}
	return u.String()
}

// URLs is every node's client URL, comma-separated, for nats.Connect and
// syncd's -nats: a client connects to one and fails over to the others.
// Killed nodes are included (they come back on the same port).
func (c *Cluster) URLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	us := make([]string, len(c.nodes))
	for i := range c.nodes {
		us[i] = c.urlLocked(i)
	}
	return strings.Join(us, ",")
}

// Server is node i's nats-server, nil while it is killed.
func (c *Cluster) Server(i int) *natsserver.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Running reports whether node i is up (not killed).
func (c *Cluster) Running(i int) bool { return c.Server(i) != nil }

// MetaLeader is the index of the node that leads the JetStream meta group
// (stream and consumer placement), or -1 while there is none.
func (c *Cluster) MetaLeader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n.srv != nil && n.srv.Running() && n.srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// Kill shuts node i down at once, as when its machine dies: no lame-duck
// mode, no leadership handed over; its clients' connections and routes
// drop, messages in flight through it are lost, and the other nodes elect
// new leaders for what it led. Unlike a power cut, nats-server still
// writes out its stores as it stops (a test of torn files needs a real
// process killed with SIGKILL). Its store directory is kept for Restart.
// Killing a killed node is an error.
func (c *Cluster) Kill(i int) error {
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("natscluster: Kill(%d): nodes are 0..%d", i, len(c.nodes)-1)
	}
	c.mu.Lock()
	n := c.nodes[i]
	s := n.srv
	n.srv = nil
	c.mu.Unlock()
	if s == nil {
		return fmt.Errorf("natscluster: Kill(%d): %s is not running", i, n.name)
	}
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// Restart starts killed node i again with the same name, ports and store
// directory, routed to every other node; it returns once the node accepts
// connections (WaitReady waits until it has caught up).
func (c *Cluster) Restart(i int) error {
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("natscluster: Restart(%d): nodes are 0..%d", i, len(c.nodes)-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i].srv != nil {
		return fmt.Errorf("natscluster: Restart(%d): %s is running (Kill it first)", i, c.nodes[i].name)
	}
	return c.startLocked(i)
}

// WaitReady waits until the cluster can serve JetStream: a meta leader is
// elected, it sees every running node as a JetStream peer, and every
// running node is current with the meta group. A killed node is not
// waited for. It checks every 50ms until ctx ends, then says what was
// missing.
func (c *Cluster) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		why := c.notReady()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natscluster: not ready: %s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}

// notReady says why the cluster is not ready, "" when it is.
func (c *Cluster) notReady() string {
	c.mu.Lock()
	var running []*natsserver.Server
	for _, n := range c.nodes {
		if n.srv != nil {
			running = append(running, n.srv)
		}
	}
	c.mu.Unlock()
	if len(running) == 0 {
		return "no node is running"
	}
	if len(c.nodes) == 1 {
		if !running[0].JetStreamEnabled() {
			return "JetStream is not enabled"
		}
		return ""
	}
	var leader *natsserver.Server
	for _, s := range running {
		if s.Running() && s.JetStreamIsLeader() {
			leader = s
			break
		}
	}
	if leader == nil {
		return "no JetStream meta leader elected yet"
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) != len(running) {
		return fmt.Sprintf("meta leader %s sees %d JetStream peers (%s), %d nodes running", leader.Name(), len(peers), strings.Join(peers, ","), len(running))
	}
	for _, s := range running {
		if !s.JetStreamIsCurrent() {
			return fmt.Sprintf("node %s is not current with the meta group", s.Name())
		}
	}
	return ""
}

// Stop shuts every running node down and, when Start made the store
// directory, removes it. The cluster cannot be used afterwards.
func (c *Cluster) Stop() {
	c.mu.Lock()
	var running []*natsserver.Server
	for _, n := range c.nodes {
		if n.srv != nil {
			running = append(running, n.srv)
			n.srv = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Shutdown()
			s.WaitForShutdown()
		}()
	}
	wg.Wait()
	if c.ownDir {
		os.RemoveAll(c.cfg.Dir)
	}
}
