package server_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
)

// An HQ user reads replies only under its own inbox prefix: it cannot
// listen to _INBOX.> for the replies syncd's connection gets (stream
// settings, publish acknowledgements) or another HQ user's, while its own
// JetStream calls, answered under its prefix, work.
func TestHQUserReadsOnlyItsOwnInbox(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	errs := &asyncErrors{}
	nc := e.HQNATS(t, errs.handler())
	for _, subject := range []string{"_INBOX.>", "_INBOX.*.*", "_INBOX.hq.>"} {
		if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
			t.Fatalf("subscribe %s: %v", subject, err)
		}
		testenv.WaitFor(t, 5*time.Second, "the server to refuse HQ's subscription to "+subject, func() bool {
			return errs.has(`Permissions Violation for Subscription to "` + subject + `"`)
		})
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(t.Context(), domain.StreamName); err != nil {
		t.Fatalf("HQ's own call, answered under its inbox prefix: %v", err)
	}
}
