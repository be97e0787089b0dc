package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// tailProc is fieldctl hq tail running in the background, as a user at a
// terminal would leave it.
type tailProc struct {
	out    *lockedBuffer
	errb   bytes.Buffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startTail(t *testing.T, args ...string) *tailProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &tailProc{out: &lockedBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx, args, strings.NewReader(""), p.out, &p.errb)
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func (p *tailProc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *tailProc) lines() []string {
	s := strings.TrimSuffix(p.out.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// publishedEnv is a server whose import reached the changelog, and how
// many changes the stream holds.
func publishedEnv(t *testing.T) (*testenv.Env, int) {
	e := testenv.Start(t)
	e.ImportSample()
	last, err := e.Store.LastSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Relay().WaitPublished(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	_, changes := e.StreamChanges()
	if len(changes) < 4 {
		t.Fatalf("the sample import made %d changes, want a few", len(changes))
	}
	return e, len(changes)
}

// seqs returns the change numbers (first column) of tail's lines.
func seqs(lines []string) string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Fields(l)[0])
	}
	return strings.Join(out, " ")
}

func seqRange(from, to int) string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return strings.Join(out, " ")
}

// -n N asks for what exists: tail prints it and exits, even when fewer
// than N changes exist (it used to wait for ever for the missing ones).
func TestHQTailNPrintsTheLastChangesAndExits(t *testing.T) {
	e, n := publishedEnv(t)
	url := e.NATS.ClientURL()
	hq := e.HQCredential(t, "tail") // as HQ would: read-only on the changelog

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", fmt.Sprint(n + 3)}, seqRange(1, n)}, // fewer exist than asked
		{[]string{"-n", "3"}, seqRange(n-2, n)},             // the last 3, as tail
		{[]string{"-from-start", "-n", "2"}, seqRange(1, 2)},
		{[]string{"-from-start", "-n", fmt.Sprint(n + 3)}, seqRange(1, n)},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			p := startTail(t, append([]string{"hq", "tail", "-nats", url, "-nats-nkey", hq}, tt.args...)...)
			testenv.WaitFor(t, 30*time.Second, "hq tail "+strings.Join(tt.args, " ")+" to exit by itself", p.ended)
			if p.err != nil {
				t.Fatalf("hq tail: %v\n%s", p.err, p.errb.String())
			}
			if got := seqs(p.lines()); got != tt.want {
				t.Errorf("changes %q, want %q", got, tt.want)
			}
		})
	}

	// A subject filter: the last 2 changes on it, not the last 2 in the
	// stream.
	p := startTail(t, "hq", "tail", "-nats", url, "-nats-nkey", hq, "-n", "2", "-subject", "fieldsync.changes.*.household", "--json")
	testenv.WaitFor(t, 30*time.Second, "hq tail -subject -n 2 to exit", p.ended)
	if got := len(p.lines()); got != 2 || !strings.Contains(p.lines()[1], fmt.Sprintf(`"seq":%d,`, lastHousehold(t, e))) {
		t.Errorf("filtered tail -n 2:\n%s", p.out.String())
	}
}

// lastHousehold is the change number of the stream's last household change.
func lastHousehold(t *testing.T, e *testenv.Env) uint64 {
	_, changes := e.StreamChanges()
	for i := len(changes) - 1; i >= 0; i-- {
		if strings.HasPrefix(changes[i].GetRecord().GetId(), "H") {
			return changes[i].GetSeq()
		}
	}
	t.Fatal("no household change")
	return 0
}

// -n N -f prints the last N and then keeps following, as tail -f.
func TestHQTailFollowsAfterTheLastChangesWithF(t *testing.T) {
	e, n := publishedEnv(t)
	p := startTail(t, "hq", "tail", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "follow"), "-n", "2", "-f")
	testenv.WaitFor(t, 30*time.Second, "the last 2 changes", func() bool { return len(p.lines()) >= 2 })

	d := e.Device(testenv.Member)
	testenv.Sync(t, d)
	f := syncer.NewFields()
	f.Set("household_id", "H001")
	f.Set("visited_on", time.Now().Format("2006-01-02"))
	if _, err := d.Create("visit", f); err != nil {
		t.Fatal(err)
	}
	testenv.Sync(t, d)
	// The enrollment and the first sync's app version put the device's
	// health on the changelog before the visit: every change after the
	// last 2, up to the visit's, in order.
	last, err := e.Store.LastSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the new visit's change", func() bool { return len(p.lines()) >= int(last)-n+2 })
	if p.ended() {
		t.Fatalf("tail -f ended: %v", p.err)
	}
	lines := p.lines()
	if got, want := seqs(lines), seqRange(n-1, int(last)); got != want {
		t.Errorf("changes %q, want %q", got, want)
	}
	if f := strings.Fields(lines[len(lines)-1]); len(f) < 5 || f[4] != "visit" {
		t.Errorf("last change %q, want the visit", lines[len(lines)-1])
	}
}

// The org's changes print as lines of their own kind, and --json gives
// their body under its kind's name: a unit with its name and town, a
// person, a household link naming who made it.
func TestHQTailPrintsTheOrg(t *testing.T) {
	e, _ := publishedEnv(t)
	url, hq := e.NATS.ClientURL(), e.HQCredential(t, "org")
	out := ok(t, "hq", "tail", "-nats", url, "-nats-nkey", hq, "-from-start", "-n", "1", "-subject", "fieldsync.changes.*.unit")
	if f := strings.Fields(out); len(f) != 6 || f[2] != "fieldsync.changes."+testenv.Town+".unit" || f[3] != testenv.Town || f[4] != "unit" || f[5] != "宋埠鎮" {
		t.Errorf("unit line: %q", out)
	}
	out = ok(t, "hq", "tail", "-nats", url, "-nats-nkey", hq, "-from-start", "-n", "1", "-subject", "fieldsync.changes.*.link", "--json")
	var ch changeJSON
	decode(t, out, &ch)
	var link struct {
		HouseholdID string `json:"household_id"`
		MemberID    string `json:"member_id"`
		By          string `json:"by"`
	}
	if err := json.Unmarshal(ch.Link, &link); err != nil {
		t.Fatalf("link body %s: %v", ch.Link, err)
	}
	if ch.Kind != "link" || ch.Record != nil || link.HouseholdID != "H001" || link.MemberID != testenv.Member || !strings.HasPrefix(link.By, "admin:") {
		t.Errorf("link change: %s", out)
	}
	out = ok(t, "hq", "tail", "-nats", url, "-nats-nkey", hq, "-from-start", "-n", "1", "-subject", "fieldsync.changes.none.person")
	if f := strings.Fields(out); len(f) < 7 || f[3] != testenv.HQ || f[4] != "person" || f[5] != "組織部" || f[6] != "hq" {
		t.Errorf("HQ person line: %q", out)
	}
}
