package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// asyncErrors records the errors NATS reports outside a call (a denied
// publish or subscription is one).
type asyncErrors struct {
	mu   sync.Mutex
	errs []string
}

func (a *asyncErrors) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		a.mu.Lock()
		a.errs = append(a.errs, err.Error())
		a.mu.Unlock()
	})
}

func (a *asyncErrors) has(sub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

func TestNATSRefusesAConnectionWithoutCredentials(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	_, err := nats.Connect(e.NATS.ClientURL(), nats.Timeout(5*time.Second))
	if err == nil || !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("a connection without credentials: %v; want an authorization error", err)
	}
	// A made-up NKey is no better.
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(e.NATS.ClientURL(), nats.Timeout(5*time.Second), server.NKeyOption(kp)); err == nil {
		t.Fatal("a connection with an unknown NKey was accepted")
	}
}

// denied runs a JetStream call that the HQ user may not make: NATS
// answers a denied request with silence (and an async permissions
// error), so it must fail within its deadline.
func denied(t *testing.T, errs *asyncErrors, what string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := call(ctx); err == nil {
		t.Errorf("HQ could %s", what)
	}
}

func TestHQCredentialReadsTheChangelogAndKeepsADurableConsumerButWritesNothing(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	last, err := e.Store.LastSeq(t.Context())
	if err != nil || last == 0 {
		t.Fatalf("last change %d, %v", last, err)
	}
	testenv.WaitFor(t, 10*time.Second, "the relay to publish", func() bool { return e.Server.Relay().Published() == last })

	errs := &asyncErrors{}
	nc := e.HQNATS(t, errs.handler())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := js.Stream(ctx, domain.StreamName)
	if err != nil {
		t.Fatalf("HQ stream info: %v", err)
	}
	if st.CachedInfo().State.Msgs != last {
		t.Fatalf("stream holds %d messages, want %d", st.CachedInfo().State.Msgs, last)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("HQ account info: %v", err)
	}
	// A durable consumer with explicit acks, as the README says.
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "hq-reader", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("HQ create durable consumer: %v", err)
	}
	batch, err := cons.Fetch(int(last), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.Ack(); err != nil {
			t.Fatalf("ack: %v", err)
		}
		n++
	}
	if batch.Error() != nil || uint64(n) != last {
		t.Fatalf("HQ read %d of %d changes: %v", n, last, batch.Error())
	}
	testenv.WaitFor(t, 5*time.Second, "the acks to count", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == last
	})
	if _, err := js.Consumer(ctx, domain.StreamName, "hq-reader"); err != nil {
		t.Fatalf("HQ consumer info: %v", err)
	}
	// An ordered consumer (fieldctl hq tail) works too.
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("HQ ordered consumer: %v", err)
	}
	if m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || m == nil {
		t.Fatalf("HQ ordered consumer next: %v", err)
	}

	// Nothing that writes.
	denied(t, errs, "publish to the changelog", func(ctx context.Context) error {
		_, err := js.Publish(ctx, domain.SubjectPrefix+".T01.household", []byte("forged"))
		return err
	})
	if err := nc.Publish(domain.SubjectPrefix+".T01.visit", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	denied(t, errs, "purge the stream", func(ctx context.Context) error { return st.Purge(ctx) })
	denied(t, errs, "delete a message", func(ctx context.Context) error { return st.DeleteMsg(ctx, 1) })
	denied(t, errs, "delete the stream", func(ctx context.Context) error { return js.DeleteStream(ctx, domain.StreamName) })
	denied(t, errs, "update the stream", func(ctx context.Context) error {
		cfg := st.CachedInfo().Config
		cfg.MaxMsgs = 1
		_, err := js.UpdateStream(ctx, cfg)
		return err
	})
	denied(t, errs, "create a stream", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUAT", Subjects: []string{"squat.>"}})
		return err
	})
	testenv.WaitFor(t, 5*time.Second, "NATS to report the denied publish", func() bool {
		return errs.has("Permissions Violation for Publish to \"" + domain.SubjectPrefix)
	})
	// The stream is as the relay left it.
	sjs := e.JS
	info, err := sjs.Stream(ctx, domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if s := info.CachedInfo().State; s.Msgs != last || s.LastSeq != last || s.FirstSeq != 1 || info.CachedInfo().Config.MaxMsgs == 1 {
		t.Fatalf("stream changed by HQ: %+v", s)
	}
	if names := sjs.StreamNames(ctx); names.Err() == nil {
		for n := range names.Name() {
			if n != domain.StreamName && n != domain.AuditStreamName { // syncd's own two
				t.Errorf("HQ created stream %s", n)
			}
		}
	}
}

func TestRevokedHQCredentialIsCutOff(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	seedFile := e.HQCredential(t, "hq-city")
	nkey, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(e.NATS.ClientURL(), nkey, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("connect with a new HQ credential: %v", err)
	}
	defer nc.Close()
	admin, ctx := e.Admin()
	list, err := admin.ListHQCredentials(ctx, &pb.ListHQCredentialsRequest{})
	if err != nil || len(list.GetCredentials()) != 1 || list.GetCredentials()[0].GetName() != "hq-city" || list.GetCredentials()[0].GetRevokedMs() != 0 {
		t.Fatalf("list: %v, %v", list, err)
	}
	if _, err := admin.RevokeHQCredential(ctx, &pb.RevokeHQCredentialRequest{Name: "hq-city"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked credential's connection is still open")
	}
	if _, err := nats.Connect(e.NATS.ClientURL(), nkey); err == nil {
		t.Fatal("a revoked HQ credential connected again")
	}
	// Its name stays taken, and the list shows it revoked.
	if _, err := admin.AddHQCredential(ctx, &pb.AddHQCredentialRequest{Name: "hq-city"}); err == nil {
		t.Fatal("a revoked credential's name was given again")
	}
	if list, _ = admin.ListHQCredentials(ctx, &pb.ListHQCredentialsRequest{}); list.GetCredentials()[0].GetRevokedMs() == 0 {
		t.Fatal("list does not show the credential revoked")
	}
	// syncd's own connection survived the reload, and so does the relay.
	addHouseholds(t, e, "HR", 2)
	want, _ := e.Store.LastSeq(t.Context())
	testenv.WaitFor(t, 10*time.Second, "the relay to publish after the reload", func() bool { return e.Server.Relay().Published() == want })
	// A credential survives a restart of the server (read from the database).
	seed2 := e.HQCredential(t, "hq-town")
	dir := e.Dir
	e.Stop()
	e2 := testenv.Start(t, testenv.WithDir(dir), testenv.WithAdminToken(e.AdminToken))
	nkey2, _ := nats.NkeyOptionFromSeed(seed2)
	nc2, err := nats.Connect(e2.NATS.ClientURL(), nkey2)
	if err != nil {
		t.Fatalf("an HQ credential after a restart: %v", err)
	}
	nc2.Close()
	if _, err := nats.Connect(e2.NATS.ClientURL(), nkey); err == nil {
		t.Fatal("a revoked HQ credential connected after a restart")
	}
}
