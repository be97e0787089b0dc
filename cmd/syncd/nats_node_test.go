package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// freePorts finds n free TCP ports on loopback (listened on and closed:
// another process may take one meanwhile, which the test then reports).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// natsCluster runs n nodes with syncd nats from the -h example's
// configuration (natsExample), in process, until the test ends; it
// returns the client URLs with the syncd user's password.
func natsCluster(t *testing.T, n int) (urls []string, hqURLs []string) {
	t.Helper()
	dir := t.TempDir()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = "127.0.0.1"
	}
	ports := freePorts(t, 2*n)
	clientPorts, routePorts := ports[:n], ports[n:]
	for i := 1; i <= n; i++ {
		file := filepath.Join(dir, fmt.Sprintf("node%d.conf", i))
		conf := natsExample(i, hosts, clientPorts, routePorts, filepath.Join(dir, fmt.Sprintf("js%d", i)), "s3cret", "hqpass")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		out, errOut := &syncBuffer{}, &syncBuffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"nats", "-config", file}, out, errOut) }()
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("node %d: %v", i, err)
				}
				if !strings.Contains(out.String(), "syncd nats: stopped") {
					t.Errorf("node %d did not say it stopped:\n%s", i, out.String())
				}
			case <-time.After(30 * time.Second):
				t.Errorf("node %d still running 30s after the stop", i)
			}
		})
		waitFor(t, out, regexp.MustCompile(`syncd nats: node fieldsync-nats-\d+: clients on nats://127\.0\.0\.1:\d+, cluster fieldsync on 127\.0\.0\.1:\d+, 2 route\(s\)`), done)
		urls = append(urls, fmt.Sprintf("nats://syncd:s3cret@127.0.0.1:%d", clientPorts[i-1]))
		hqURLs = append(hqURLs, fmt.Sprintf("nats://hq:hqpass@127.0.0.1:%d", clientPorts[i-1]))
	}
	return urls, hqURLs
}

func jsOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// retry calls f until it succeeds or 30s pass: a cluster elects its
// JetStream meta leader a moment after its nodes are up.
func retry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSyncdNATSRunsAClusterFromConfigFiles: three syncd nats nodes, each
// from its own file made from the -h example, form a JetStream cluster:
// an R3 stream created through one node takes messages through another
// and is read through the third; the example's hq user reads
// FIELDSYNC_HQ (sourcing the stream) but may not publish or create
// streams.
func TestSyncdNATSRunsAClusterFromConfigFiles(t *testing.T) {
	urls, hqURLs := natsCluster(t, 3)
	ctx := t.Context()
	js1, js2, js3 := jsOf(t, urls[0]), jsOf(t, urls[1]), jsOf(t, urls[2])
	var st jetstream.Stream
	retry(t, "create an R3 stream", func() (err error) {
		st, err = js1.CreateStream(ctx, jetstream.StreamConfig{Name: "FIELDSYNC_CHANGES_XIAONAN", Subjects: []string{"fieldsync.changes.xiaonan.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	if info := st.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream: replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	for i := range 10 {
		if _, err := js2.Publish(ctx, "fieldsync.changes.xiaonan.T01.visit", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	st3, err := js3.Stream(ctx, "FIELDSYNC_CHANGES_XIAONAN")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		m, err := st3.GetMsg(ctx, uint64(i+1))
		if err != nil || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("message %d: %v %q", i+1, err, m.Data)
		}
	}

	// HQ: a stream sourcing the region's, read by the read-only user.
	retry(t, "create FIELDSYNC_HQ", func() error {
		_, err := js1.CreateStream(ctx, jetstream.StreamConfig{Name: domain.HQStreamName, Replicas: 3, Storage: jetstream.FileStorage,
			Sources: []*jetstream.StreamSource{{Name: "FIELDSYNC_CHANGES_XIAONAN"}}})
		return err
	})
	hq := jsOf(t, hqURLs[1])
	var got []string
	retry(t, "the hq user reads FIELDSYNC_HQ", func() error {
		hs, err := hq.Stream(ctx, domain.HQStreamName)
		if err != nil {
			return err
		}
		c, err := hs.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		batch, err := c.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		got = got[:0]
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
		}
		if len(got) != 10 {
			return fmt.Errorf("read %d of 10 messages", len(got))
		}
		return nil
	})
	if strings.Join(got, ",") != "0,1,2,3,4,5,6,7,8,9" {
		t.Fatalf("hq read %v", got)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := hq.Publish(short, "fieldsync.changes.xiaonan.T01.visit", []byte("forged")); err == nil {
		t.Fatal("the hq user published to a region's subject")
	}
	if _, err := hq.CreateStream(short, jetstream.StreamConfig{Name: "HQ_OWN", Subjects: []string{"hq.>"}}); err == nil {
		t.Fatal("the hq user created a stream")
	}
}

// TestRegionSyncdOnTheCluster: a region's syncd with -changelog-replicas 3
// on the three-node cluster publishes an R3 stream under its region; a
// rebuild (someone else's message in it) keeps the replicas and the
// region's subjects; a restart without the flag keeps the stream's 3.
func TestRegionSyncdOnTheCluster(t *testing.T) {
	urls, _ := natsCluster(t, 3)
	dir := t.TempDir()
	ctx := t.Context()
	start := func(replicas int) *syncd.Daemon {
		t.Helper()
		out := &syncBuffer{}
		d, err := syncd.Start(ctx, syncd.Config{Dir: dir, Plaintext: true, NATSURL: strings.Join(urls, ","), Region: "xiaonan", StreamReplicas: replicas, Out: out})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "syncd: changelog stream FIELDSYNC_CHANGES_XIAONAN: subjects fieldsync.changes.xiaonan.>, file storage, 3 replicas,") {
			t.Errorf("start lines do not describe the R3 stream:\n%s", out.String())
		}
		if !strings.Contains(out.String(), "syncd: region xiaonan: changelog stream FIELDSYNC_CHANGES_XIAONAN on subjects fieldsync.changes.xiaonan.>") {
			t.Errorf("start lines do not name the region and stream:\n%s", out.String())
		}
		return d
	}
	d := start(3)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			d.Stop()
		}
	})
	for i := range 5 {
		if err := d.Store.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.PutRecord(nil, &pb.Record{Id: fmt.Sprintf("r%d", i), Kind: pb.Kind_KIND_EVENT}, store.RecordMeta{VillageID: "xiaonan-V01", TownID: "xiaonan-T01"}, store.ChangeInfo{DeviceID: "d1", UserID: "xiaonan-U1"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	d.Server.Relay().Poke()
	js := jsOf(t, urls[2])
	caughtUp := func(what string) jetstream.StreamConfig {
		t.Helper()
		var cfg jetstream.StreamConfig
		last, _ := d.Store.LastSeq(ctx)
		retry(t, what, func() error {
			st, err := js.Stream(ctx, "FIELDSYNC_CHANGES_XIAONAN")
			if err != nil {
				return err
			}
			info := st.CachedInfo()
			if info.State.Msgs != last || info.State.LastSeq != last {
				return fmt.Errorf("stream holds %d messages up to %d, database %d changes", info.State.Msgs, info.State.LastSeq, last)
			}
			m, err := st.GetMsg(ctx, last)
			if err != nil {
				return err
			}
			if m.Header.Get(domain.HeaderRegion) != "xiaonan" || !strings.HasPrefix(m.Subject, "fieldsync.changes.xiaonan.xiaonan-T01.") {
				return fmt.Errorf("message %d: subject %s region %q", last, m.Subject, m.Header.Get(domain.HeaderRegion))
			}
			cfg = info.Config
			return nil
		})
		return cfg
	}
	if cfg := caughtUp("the R3 stream to catch up"); cfg.Replicas != 3 {
		t.Fatalf("replicas %d, want 3", cfg.Replicas)
	}
	if _, err := js.Publish(ctx, "fieldsync.changes.xiaonan.junk", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	// The rebuild deletes and creates the stream: wait for the junk to go.
	retry(t, "the rebuild", func() error {
		st, err := js.Stream(ctx, "FIELDSYNC_CHANGES_XIAONAN")
		if err != nil {
			return err
		}
		if _, err := st.GetLastMsgForSubject(ctx, "fieldsync.changes.xiaonan.junk"); !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("junk still there (%v)", err)
		}
		return nil
	})
	if cfg := caughtUp("the rebuilt stream to catch up"); cfg.Replicas != 3 || cfg.Subjects[0] != "fieldsync.changes.xiaonan.>" {
		t.Fatalf("after the rebuild: replicas %d subjects %v", cfg.Replicas, cfg.Subjects)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	d = start(0)
	stopped = false
	if cfg := caughtUp("after a restart without -changelog-replicas"); cfg.Replicas != 3 {
		t.Fatalf("a restart without the flag: replicas %d, want the stream's 3 kept", cfg.Replicas)
	}
}
