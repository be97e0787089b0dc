package server_test

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

var firstCode = regexp.MustCompile("`([^`]*)`")

// readmeSection returns the lines of README.md's section that starts with
// the heading line head, up to the next heading of its level or higher.
func readmeSection(t *testing.T, head string) []string {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	level := strings.Index(head, " ")
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			l := strings.Index(line, " ")
			if in && l <= level {
				break
			}
			if line == head {
				in = true
				continue
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("README.md has no section %q", head)
	}
	return out
}

// The README's table of the stream's settings is what a running server's
// stream has (with syncd's default limits).
func TestREADMEChangelogContract(t *testing.T) {
	rows := map[string]string{}
	for _, line := range readmeSection(t, "## The changelog contract (NATS JetStream)") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		if m := firstCode.FindStringSubmatch(cells[2]); m != nil {
			if _, dup := rows[strings.TrimSpace(cells[1])]; !dup {
				rows[strings.TrimSpace(cells[1])] = m[1]
			}
		}
	}
	e := testenv.Start(t)
	e.ImportSample()
	st, err := e.JS.Stream(t.Context(), domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	discard := map[jetstream.DiscardPolicy]string{jetstream.DiscardOld: "old", jetstream.DiscardNew: "new"}[cfg.Discard]
	dur := func(s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("README value %q: %v", s, err)
		}
		return d
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Errorf("README value %q: %v", s, err)
		}
		return n
	}
	var maxBytes server.ByteSize
	checks := []struct {
		row string
		ok  func(v string) bool
		got any
	}{
		{"stream", func(v string) bool { return v == cfg.Name }, cfg.Name},
		{"stream subjects", func(v string) bool { return v == strings.Join(cfg.Subjects, " ") }, cfg.Subjects},
		{"storage", func(v string) bool { return v == strings.ToLower(cfg.Storage.String()) }, cfg.Storage},
		{"retention", func(v string) bool { return v == strings.ToLower(cfg.Retention.String()) }, cfg.Retention},
		{"discard", func(v string) bool { return v == discard }, cfg.Discard},
		{"duplicate window", func(v string) bool { return dur(v) == cfg.Duplicates }, cfg.Duplicates},
		{"max age", func(v string) bool { return v == "0" && cfg.MaxAge == 0 || v != "0" && dur(v) == cfg.MaxAge }, cfg.MaxAge},
		{"max bytes", func(v string) bool { return maxBytes.Set(v) == nil && int64(maxBytes) == cfg.MaxBytes }, cfg.MaxBytes},
		{"max messages per subject", func(v string) bool { return num(v) == cfg.MaxMsgsPerSubject }, cfg.MaxMsgsPerSubject},
		{"max message size", func(v string) bool { return num(v) == int64(cfg.MaxMsgSize) }, cfg.MaxMsgSize},
	}
	for _, c := range checks {
		v, ok := rows[c.row]
		if !ok {
			t.Errorf("README's changelog contract has no row %q", c.row)
			continue
		}
		if !c.ok(v) {
			t.Errorf("README says %s is %q; the stream has %v", c.row, v, c.got)
		}
	}
}

// The README's natscli commands for HQ, made with nats.go and an HQ
// credential: stream info, a durable pull consumer with explicit acks, and
// next with acks. natscli itself is not run; the commands are parsed from
// the README and mapped to the same JetStream API calls.
func TestREADMENatsCommandsWorkWithAnHQCredential(t *testing.T) {
	var cmds [][]string
	for _, line := range readmeSection(t, "### HQ on NATS: credentials") {
		if strings.HasPrefix(line, "nats ") {
			cmds = append(cmds, strings.Fields(line))
		}
	}
	if len(cmds) != 3 {
		t.Fatalf("README's HQ section has %d nats commands, want stream info, consumer add, consumer next", len(cmds))
	}
	e := testenv.Start(t)
	e.ImportSample()
	last, _ := e.Store.LastSeq(t.Context())
	testenv.WaitFor(t, 10*time.Second, "the relay to publish", func() bool { return e.Server.Relay().Published() == last })
	js, err := jetstream.New(e.HQNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, args := range cmds {
		flags := map[string]string{}
		var pos []string
		for i := 1; i < len(args); i++ {
			if name, ok := strings.CutPrefix(args[i], "--"); ok {
				if name == "pull" || name == "defaults" {
					flags[name] = "true"
					continue
				}
				flags[name] = args[i+1]
				i++
				continue
			}
			pos = append(pos, args[i])
		}
		if flags["nkey"] == "" {
			t.Errorf("%s: no --nkey: HQ connects with its credential", strings.Join(args, " "))
		}
		// HQ may read replies only under its own inbox (HQConnectOptions
		// sets it for the connection below).
		if !strings.HasPrefix(flags["inbox-prefix"], server.HQInboxPrefix("")) {
			t.Errorf("%s: --inbox-prefix %q, want %s<public key>", strings.Join(args, " "), flags["inbox-prefix"], server.HQInboxPrefix(""))
		}
		switch strings.Join(pos[:2], " ") {
		case "stream info":
			st, err := js.Stream(ctx, pos[2])
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			if st.CachedInfo().State.Msgs != last {
				t.Errorf("stream info: %d messages, want %d", st.CachedInfo().State.Msgs, last)
			}
		case "consumer add":
			if flags["pull"] == "" || flags["deliver"] != "all" || flags["ack"] != "explicit" {
				t.Fatalf("consumer add: want --pull --deliver all --ack explicit, got %v", flags)
			}
			if _, err := js.CreateConsumer(ctx, pos[2], jetstream.ConsumerConfig{Durable: pos[3], DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
		case "consumer next":
			n, err := strconv.Atoi(flags["count"])
			if err != nil {
				t.Fatalf("consumer next --count %q", flags["count"])
			}
			cons, err := js.Consumer(ctx, pos[2], pos[3])
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for m := range batch.Messages() {
				if err := m.Ack(); err != nil {
					t.Fatalf("ack: %v", err)
				}
				got++
			}
			if want := min(n, int(last)); got != want || batch.Error() != nil {
				t.Fatalf("consumer next: %d messages, want %d (%v)", got, want, batch.Error())
			}
		default:
			t.Fatalf("README command not mapped: %s", strings.Join(args, " "))
		}
	}
}
