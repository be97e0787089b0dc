package server_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
)

// An HQ user can create a push consumer on the changelog that delivers to
// any subject it names (NATS does not check a deliver subject against its
// permissions). Delivered onto the audit heads' subject, the changelog
// would be copied into the audit stream, breaking its anchor and filling
// the disk. The subject is secret with the audit key: HQ's deliveries to
// the well-known one land nowhere. The control, delivering to the secret
// subject (which HQ cannot know), shows the attack the secret stops.
func TestHQCannotDeliverIntoTheAuditStream(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	last, _ := e.Store.LastSeq(t.Context())
	testenv.WaitFor(t, 10*time.Second, "the changelog and the audit heads published", func() bool {
		return e.Server.Relay().Published() == last && e.Server.AuditPublished() > 0
	})
	secret := e.Store.AuditHeadSubject()
	if secret == domain.AuditHeadSubject(nil) {
		t.Fatalf("audit heads on the well-known subject %s", secret)
	}
	audit, err := e.JS.Stream(t.Context(), domain.AuditStreamName)
	if err != nil {
		t.Fatal(err)
	}
	hq, err := jetstream.New(e.HQNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	push := func(name, deliver string) {
		t.Helper()
		if _, err := hq.CreateOrUpdatePushConsumer(t.Context(), domain.StreamName, jetstream.ConsumerConfig{Name: name, DeliverSubject: deliver,
			DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy}); err != nil {
			t.Fatalf("HQ push consumer delivering to %s: %v", deliver, err)
		}
	}
	push("guess", domain.AuditHeadSubject(nil))
	push("control", secret)
	// The control's copies land in the audit stream (the attack is real);
	// the guess's do not (no change twice).
	copies := map[string]int{}
	testenv.WaitFor(t, 10*time.Second, "the control's deliveries in the audit stream", func() bool {
		clear(copies)
		info, err := audit.Info(t.Context())
		if err != nil {
			return false
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := audit.GetMsg(t.Context(), seq)
			if err != nil {
				return false
			}
			if m.Subject != secret {
				copies[string(m.Data)]++
			}
		}
		return len(copies) > 0
	})
	for _, n := range copies {
		if n != 1 {
			t.Fatalf("a change is in the audit stream %d times: HQ's delivery to the well-known subject %s landed", n, domain.AuditHeadSubject(nil))
		}
	}
}
