package server_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
)

// A foreign message past the database's last change whose id merely has
// the database's lineage as prefix (a forged or mistyped id, not the next
// change's) is junk: the relay rebuilds the stream but does not take the
// database for one that went back in time, so it keeps its lineage (a new
// one makes every device drop what it holds and read its whole scope again,
// and every HQ consumer reload).
func TestRelayKeepsTheLineageForAForeignMessageWithItsPrefix(t *testing.T) {
	logs := &logBuffer{}
	e := testenv.Start(t, withLog(logs))
	e.ImportSample()
	waitStreamMatchesDB(t, e, logs)
	last, err := e.Store.LastSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	lineage := e.Store.Instance()
	js, _ := otherConn(t, e)
	m := nats.NewMsg(domain.SubjectPrefix + ".T01.household")
	m.Data = []byte("forged")
	m.Header.Set(jetstream.MsgIDHeader, lineage+"-"+strconv.FormatUint(last+100, 10))
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the relay to rebuild the stream", func() bool {
		return strings.Contains(logs.String(), "did not match the database")
	})
	waitStreamMatchesDB(t, e, logs)
	if got := e.Store.Instance(); got != lineage {
		t.Fatalf("the database's lineage went from %s to %s for a foreign message; log:\n%s", lineage, got, logs)
	}
}
