package natscluster_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/internal/natscluster"
)

func start(t *testing.T, cfg natscluster.Config) *natscluster.Cluster {
	t.Helper()
	c, err := natscluster.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// publish publishes msg n (as "n" with Nats-Msg-Id n) until JetStream
// acknowledges it, riding out a leader election.
func publish(ctx context.Context, js jetstream.JetStream, n int) error {
	var last error
	for ctx.Err() == nil {
		m := nats.NewMsg("t.x")
		m.Data = []byte(strconv.Itoa(n))
		m.Header.Set(nats.MsgIdHdr, strconv.Itoa(n))
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("publish %d: %v (last error %v)", n, ctx.Err(), last)
}

// A replicated stream outlives the kill of its leader: publishing goes on
// on the other two nodes, and the killed node comes back on its old ports
// and store and catches up.
func TestAnR3StreamSurvivesTheKillOfItsLeader(t *testing.T) {
	c := start(t, natscluster.Config{})
	if c.Len() != 3 || len(strings.Split(c.URLs(), ",")) != 3 {
		t.Fatalf("want 3 nodes and 3 URLs, got %d and %q", c.Len(), c.URLs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 50; n++ {
		if err := publish(ctx, js, n); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := c.Index(info.Cluster.Leader)
	if victim < 0 {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	urlBefore := c.URL(victim)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	if c.Running(victim) || c.Server(victim) != nil {
		t.Fatal("a killed node still counts as running")
	}
	if err := c.Kill(victim); err == nil {
		t.Fatal("killing a killed node: no error")
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for n := 51; n <= 100; n++ {
		if err := publish(ctx, js, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(victim); err == nil {
		t.Fatal("restarting a running node: no error")
	}
	if got := c.URL(victim); got != urlBefore {
		t.Fatalf("node %d came back on %s, was %s", victim, got, urlBefore)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Every replica, the restarted one included, gets current and holds
	// 1..100 once each, in order: read it from the restarted node alone.
	for {
		info, err = st.Info(ctx)
		if err == nil && info.State.Msgs == 100 && len(info.Cluster.Replicas) == 2 && allCurrent(info.Cluster.Replicas) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("replicas never caught up: %+v, %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	one, err := nats.Connect(c.URL(victim))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	js1, _ := jetstream.New(one)
	st1, err := js1.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 100; seq++ {
		m, err := st1.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if string(m.Data) != strconv.FormatUint(seq, 10) {
			t.Fatalf("message %d holds %q", seq, m.Data)
		}
	}
}

func allCurrent(ps []*jetstream.PeerInfo) bool {
	for _, p := range ps {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}

func TestUserAndPasswordAreRequiredWhenGiven(t *testing.T) {
	c := start(t, natscluster.Config{Nodes: 1, User: "syncd", Password: "s3cret"})
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatalf("with the URL's credentials: %v", err)
	}
	nc.Close()
	bare := strings.Replace(c.URL(0), "syncd:s3cret@", "", 1)
	if bare == c.URL(0) {
		t.Fatalf("URL %q does not carry the credentials", c.URL(0))
	}
	if nc, err := nats.Connect(bare); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("want an authorization error, got %v", err)
	}
}

func TestStartRefusesABadConfig(t *testing.T) {
	for _, cfg := range []natscluster.Config{{Nodes: -1}, {Name: "a.b"}, {User: "u"}} {
		if c, err := natscluster.Start(cfg); err == nil {
			c.Stop()
			t.Fatalf("%+v: no error", cfg)
		}
	}
}
