package server_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

func withLimits(l server.StreamLimits) testenv.Option {
	return testenv.WithServerConfig(func(c *server.Config) { c.StreamLimits = l })
}

func streamConfig(t *testing.T, e *testenv.Env) jetstream.StreamConfig {
	t.Helper()
	st, err := e.JS.Stream(t.Context(), domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().Config
}

// Limits given explicitly (syncd's flags) are applied; on a later start
// without them, the stream keeps what it has, an operator's change
// included; what the relay's correctness needs is put back whatever an
// operator set.
func TestChangelogLimitsAreKeptAcrossRestartsUnlessGivenAgain(t *testing.T) {
	dir := t.TempDir()
	e := testenv.Start(t, testenv.WithDir(dir), withLimits(server.StreamLimits{MaxAge: 720 * time.Hour, SetMaxAge: true, MaxBytes: 1 << 30, SetMaxBytes: true}))
	e.ImportSample()
	cfg := streamConfig(t, e)
	if cfg.MaxAge != 720*time.Hour || cfg.MaxBytes != 1<<30 || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("stream: max age %v, max bytes %d, discard %v; want 720h, 1GiB, old", cfg.MaxAge, cfg.MaxBytes, cfg.Discard)
	}
	// An operator edits the stream (nats stream edit, with syncd's key):
	// a retention of their own, and settings that would break the relay.
	cfg.MaxAge, cfg.MaxMsgs = 48*time.Hour, 100000
	cfg.Discard, cfg.Duplicates, cfg.MaxMsgsPerSubject = jetstream.DiscardNew, 10*time.Minute, 5
	if _, err := e.JS.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	token := e.AdminToken
	e.Stop()

	// Restarted without limit flags: the operator's retention stays.
	e = testenv.Start(t, testenv.WithDir(dir), testenv.WithAdminToken(token), withLimits(server.StreamLimits{}))
	cfg = streamConfig(t, e)
	if cfg.MaxAge != 48*time.Hour || cfg.MaxMsgs != 100000 || cfg.MaxBytes != 1<<30 {
		t.Errorf("after a restart: max age %v, max msgs %d, max bytes %d; want the operator's 48h, 100000 and the earlier 1GiB", cfg.MaxAge, cfg.MaxMsgs, cfg.MaxBytes)
	}
	if cfg.Discard != jetstream.DiscardOld || cfg.Duplicates != 30*time.Second || cfg.MaxMsgsPerSubject > 0 {
		t.Errorf("after a restart: discard %v, duplicates %v, max per subject %d; want old, 30s, none", cfg.Discard, cfg.Duplicates, cfg.MaxMsgsPerSubject)
	}
	e.Stop()

	// Restarted with one limit given: that one changes, the others stay.
	e = testenv.Start(t, testenv.WithDir(dir), testenv.WithAdminToken(token), withLimits(server.StreamLimits{MaxBytes: 2 << 30, SetMaxBytes: true}))
	cfg = streamConfig(t, e)
	if cfg.MaxBytes != 2<<30 || cfg.MaxAge != 48*time.Hour || cfg.MaxMsgs != 100000 {
		t.Errorf("with -changelog-max-bytes 2GiB: max bytes %d, max age %v, max msgs %d; want 2GiB, 48h, 100000", cfg.MaxBytes, cfg.MaxAge, cfg.MaxMsgs)
	}
	if got := server.DescribeStream(&cfg); !strings.Contains(got, "max 2GiB") || !strings.Contains(got, "max age 48h0m0s") {
		t.Errorf("DescribeStream: %s", got)
	}
}

// A stream that its own size limit trimmed is sound: the relay goes on
// after its last message and never rebuilds it (a rebuild would be
// trimmed again, for ever).
func TestRelayKeepsAStreamTrimmedByItsOwnLimits(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	limits := withLimits(server.StreamLimits{MaxBytes: 16 << 10, SetMaxBytes: true})
	e := testenv.Start(t, testenv.WithDir(dir), withLog(logs), limits)
	e.ImportSample()
	var first uint64
	for i := 0; first <= 1; i++ {
		if i == 20 {
			t.Fatalf("the stream was never trimmed by its 16KiB limit:\n%s", logs)
		}
		addHouseholds(t, e, "HT"+string(rune('A'+i)), 20)
		last, _ := e.Store.LastSeq(t.Context())
		testenv.WaitFor(t, 10*time.Second, "the relay to publish", func() bool { return e.Server.Relay().Published() == last })
		first = streamInfo(t, e).State.FirstSeq
	}
	trimmedUpTo := first
	check := func() {
		t.Helper()
		info := streamInfo(t, e)
		last, _ := e.Store.LastSeq(t.Context())
		s := info.State
		if s.LastSeq != last || s.Msgs != s.LastSeq-s.FirstSeq+1 || s.FirstSeq < trimmedUpTo {
			t.Fatalf("stream %d..%d (%d messages), database at %d", s.FirstSeq, s.LastSeq, s.Msgs, last)
		}
		if strings.Contains(logs.String(), "did not match the database") {
			t.Fatalf("the relay rebuilt a stream its own limit trimmed:\n%s", logs)
		}
		// Message n is still change n.
		st, err := e.JS.Stream(t.Context(), domain.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(t.Context(), s.FirstSeq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(domain.HeaderSeq); got != strconv.FormatUint(s.FirstSeq, 10) {
			t.Fatalf("message %d carries %s %s", s.FirstSeq, domain.HeaderSeq, got)
		}
	}
	check()
	// A restart checks the whole stream: still sound.
	token := e.AdminToken
	e.Stop()
	e = testenv.Start(t, testenv.WithDir(dir), testenv.WithAdminToken(token), withLog(logs), limits)
	check()
	addHouseholds(t, e, "HU", 5)
	last, _ := e.Store.LastSeq(t.Context())
	testenv.WaitFor(t, 10*time.Second, "the relay to publish after the restart", func() bool { return e.Server.Relay().Published() == last })
	check()
}

func streamInfo(t *testing.T, e *testenv.Env) *jetstream.StreamInfo {
	t.Helper()
	st, err := e.JS.Stream(t.Context(), domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo()
}
