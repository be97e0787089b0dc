package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// logBuffer is a slog destination that tests read while the server runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// withLog makes the server log into a buffer the test reads.
func withLog(buf *logBuffer) testenv.Option {
	return testenv.WithServerConfig(func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
}

// addHouseholds commits n new changes through the admin import.
func addHouseholds(t testing.TB, e *testenv.Env, prefix string, n int) {
	t.Helper()
	admin, ctx := e.Admin()
	req := &pb.ImportOrgRequest{}
	for i := range n {
		req.Households = append(req.Households, &pb.Household{Id: fmt.Sprintf("%s%03d", prefix, i), GridId: testenv.Grid, Head: "新戶" + strconv.Itoa(i), Address: "張家塆", Members: "2"})
	}
	resp, err := admin.ImportOrg(ctx, req)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import rejected rows: %v", resp.GetErrors())
	}
}

// waitStreamMatchesDB waits until the stream is the changes table again,
// change by change.
func waitStreamMatchesDB(t *testing.T, e *testenv.Env, logs *logBuffer) {
	t.Helper()
	waitStreamMatchesDBWithin(t, e, logs, 30*time.Second)
}

func waitStreamMatchesDBWithin(t *testing.T, e *testenv.Env, logs *logBuffer, within time.Duration) {
	t.Helper()
	var last error
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = testenv.StreamMatchesDB(ctx, e.JS, e.Store)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream still differs from the database after %v: %v\nlog:\n%s", within, last, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// otherConn is a connection that is not the relay's: an operator's nats
// CLI with syncd's key (no other user may change the stream).
func otherConn(t *testing.T, e *testenv.Env) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	nc, err := nats.Connect(e.NATS.ClientURL(), e.NATSAuth.ConnectOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return js, st
}

func TestRelayRepairsAStreamOthersChanged(t *testing.T) {
	cases := []struct {
		name   string
		found  string // what the relay's warning must say it found
		damage func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64)
	}{
		{"junk message published by another connection", "past the database's last change", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			if _, err := js.Publish(t.Context(), domain.SubjectPrefix+".T01.junk", []byte("not a change")); err != nil {
				t.Fatal(err)
			}
		}},
		{"forged Fieldsync-Seq header", "past the database's last change", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			m := nats.NewMsg(domain.SubjectPrefix + ".T01.household")
			m.Data = []byte("forged")
			m.Header.Set(domain.HeaderSeq, strconv.FormatUint(last+1, 10))
			m.Header.Set(jetstream.MsgIDHeader, "forger-1")
			if _, err := js.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}},
		{"a stream of the right length holding other messages", "has id", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			// Counts stay right: only a comparison with SQLite tells.
			if err := js.DeleteStream(t.Context(), domain.StreamName); err != nil {
				t.Fatal(err)
			}
			// A stream of the right length whose messages are not the
			// changes: a restored NATS store of another server, say.
			if _, err := server.EnsureStream(t.Context(), js); err != nil {
				t.Fatal(err)
			}
			for i := uint64(1); i <= last; i++ {
				m := nats.NewMsg(domain.SubjectPrefix + ".T01.household")
				m.Data = []byte("forged")
				m.Header.Set(domain.HeaderSeq, strconv.FormatUint(i, 10))
				m.Header.Set(jetstream.MsgIDHeader, "other-"+strconv.FormatUint(i, 10))
				if _, err := js.PublishMsg(t.Context(), m); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"purge", "purged", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			if err := st.Purge(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
		{"purge up to a sequence", "purged or trimmed", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			if err := st.Purge(t.Context(), jetstream.WithPurgeSequence(last/2)); err != nil {
				t.Fatal(err)
			}
		}},
		{"first messages deleted", "purged or trimmed", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			for seq := uint64(1); seq <= 3; seq++ {
				if err := st.DeleteMsg(t.Context(), seq); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"message deleted in the middle", "deleted", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			if err := st.DeleteMsg(t.Context(), last/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"stream deleted", "", func(t *testing.T, js jetstream.JetStream, st jetstream.Stream, last uint64) {
			if err := js.DeleteStream(t.Context(), domain.StreamName); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logBuffer{}
			e := testenv.Start(t, withLog(logs))
			e.ImportSample()
			waitStreamMatchesDB(t, e, logs)
			last, err := e.Store.LastSeq(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			js, st := otherConn(t, e)
			tc.damage(t, js, st, last)
			// The relay notices by itself (nothing new to publish).
			waitStreamMatchesDB(t, e, logs)
			if tc.found != "" {
				out := logs.String()
				if !strings.Contains(out, "did not match the database") || !strings.Contains(out, tc.found) {
					t.Fatalf("the relay's log does not say it rebuilt the stream after finding %q:\n%s", tc.found, out)
				}
			}
			// And goes on publishing.
			addHouseholds(t, e, "HN", 3)
			waitStreamMatchesDB(t, e, logs)
			if got, _ := e.Store.LastSeq(t.Context()); got != last+3 {
				t.Fatalf("database at change %d, want %d", got, last+3)
			}
		})
	}
}

// A damage made while changes are being committed meets a failed publish
// first (the relay's expected sequence no longer matches): the same repair.
func TestRelayRepairsAfterAFailedPublish(t *testing.T) {
	logs := &logBuffer{}
	e := testenv.Start(t, withLog(logs))
	e.ImportSample()
	waitStreamMatchesDB(t, e, logs)
	js, _ := otherConn(t, e)
	for i := range 5 {
		if _, err := js.Publish(t.Context(), domain.SubjectPrefix+".T01.junk", []byte("junk")); err != nil {
			t.Fatal(err)
		}
		addHouseholds(t, e, fmt.Sprintf("H%d", i), 2)
	}
	waitStreamMatchesDB(t, e, logs)
	if !strings.Contains(logs.String(), "did not match the database") {
		t.Fatalf("no rebuild logged:\n%s", logs)
	}
}

// Check, as syncd calls it before serving, repairs a stream of a lineage
// the database left, and a whole check meets a damaged message that the
// stream's counts do not show.
func TestRelayCheckRebuildsAStreamOfAnotherLineage(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	e := testenv.Start(t, withLog(logs), testenv.WithDir(dir))
	e.ImportSample()
	waitStreamMatchesDB(t, e, logs)
	old := e.Store.Instance()
	e.Stop()

	e = testenv.Start(t, withLog(logs), testenv.WithDir(dir))
	if _, err := e.Store.Rebase(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitStreamMatchesDB(t, e, logs)
	if e.Store.Instance() == old {
		t.Fatal("lineage did not change")
	}
	if !strings.Contains(logs.String(), "is of lineage") {
		t.Fatalf("the relay did not say why it rebuilt:\n%s", logs)
	}
}

// A relay whose NATS user may not delete the stream cannot repair it: it
// says so at error level on every retry, naming the command that repairs
// it, and rebuilds the stream once an operator deleted it.
func TestRelayRefusesLoudlyWhereItCannotRepair(t *testing.T) {
	opts := &natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		// As syncd sets it (server.DefaultNATSMaxStore): left to nats-server, the
		// store is 75% of the free disk, and on a disk with less than 64 GiB free
		// the changelog's 48 GiB limit would not fit.
		JetStreamMaxStore: server.DefaultNATSMaxStore,
		Users: []*natsserver.User{
			{Username: "syncd", Password: "s", Permissions: &natsserver.Permissions{
				Publish: &natsserver.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.DELETE.>"}}}},
			{Username: "operator", Password: "o"},
		}}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	connect := func(user, pass string) jetstream.JetStream {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, pass))
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
	syncdJS, operatorJS := connect("syncd", "s"), connect("operator", "o")

	logs := &logBuffer{}
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.JetStream = syncdJS
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}))
	e.JS = syncdJS // StreamMatchesDB reads the stream syncd publishes to
	e.ImportSample()
	waitStreamMatchesDB(t, e, logs)
	if _, err := operatorJS.Publish(t.Context(), domain.SubjectPrefix+".T01.junk", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "two refusals logged at error level", func() bool {
		return strings.Count(logs.String(), "level=ERROR msg=\"relay: the changelog stream does not match the database and cannot be repaired") >= 2
	})
	if out := logs.String(); !strings.Contains(out, "nats stream rm "+domain.StreamName+" -f") {
		t.Fatalf("the refusal does not name the command that repairs it:\n%s", out)
	}
	if err := operatorJS.DeleteStream(t.Context(), domain.StreamName); err != nil {
		t.Fatal(err)
	}
	waitStreamMatchesDB(t, e, logs)
	addHouseholds(t, e, "HR", 2)
	waitStreamMatchesDB(t, e, logs)
}
