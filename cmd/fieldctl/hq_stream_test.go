package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/server"
)

// regionsNATS is an embedded JetStream holding region streams a and b
// with n changes each, published as their relays do.
func regionsNATS(t *testing.T, n int) (string, jetstream.JetStream) {
	t.Helper()
	ns, err := server.EmbeddedNATS(t.TempDir(), "127.0.0.1", -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range []string{"a", "b"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: domain.RegionStream(r), Subjects: []string{domain.RegionSubjectPrefix(r) + ".>"}}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			msg := nats.NewMsg(domain.RegionSubject(r, "fieldsync.changes.T1.visit"))
			msg.Data = []byte{}
			msg.Header.Set(domain.HeaderRegion, r)
			msg.Header.Set(domain.HeaderSeq, strconv.Itoa(i))
			msg.Header.Set(domain.HeaderLineage, "L"+r)
			msg.Header.Set(jetstream.MsgIDHeader, "L"+r+"-"+strconv.Itoa(i))
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ns.ClientURL(), js
}

func runFieldctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

func TestHQStreamCreatesAndAddsRegions(t *testing.T) {
	url, js := regionsNATS(t, 5)
	out, errOut, err := runFieldctl(t, "hq", "stream", "-nats", url, "-regions", "a,b", "-replicas", "1", "--json")
	if err != nil {
		t.Fatalf("hq stream: %v\n%s", err, errOut)
	}
	var got hqStreamJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Stream != domain.HQStreamName || got.Replicas != 1 || len(got.Sources) != 2 || got.Sources[0].Region != "a" ||
		got.Sources[1].Stream != "FIELDSYNC_CHANGES_B" || got.Sources[0].Found == nil || !*got.Sources[0].Found {
		t.Fatalf("--json: %+v", got)
	}
	st, err := js.Stream(context.Background(), domain.HQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for st.CachedInfo().State.Msgs < 10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		st.Info(context.Background())
	}
	if n := st.CachedInfo().State.Msgs; n != 10 {
		t.Fatalf("%s holds %d messages, want the 10 of a and b", domain.HQStreamName, n)
	}

	// A third region, not running yet: added, and said so.
	out, errOut, err = runFieldctl(t, "hq", "stream", "-nats", url, "-regions", "a,b,c")
	if err != nil {
		t.Fatalf("hq stream: %v\n%s", err, errOut)
	}
	for _, want := range []string{"stream FIELDSYNC_HQ: 1 replicas, 10 messages", "FIELDSYNC_CHANGES_C", "no such stream yet: syncd -region c"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// hq tail on the HQ stream says each change's region.
	out, errOut, err = runFieldctl(t, "hq", "tail", "-nats", url, "-stream", domain.HQStreamName, "-from-start", "-n", "10", "--json")
	if err != nil {
		t.Fatalf("hq tail: %v\n%s", err, errOut)
	}
	regions := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var c changeJSON
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		regions[c.FieldsyncRegion]++
	}
	if regions["a"] != 5 || regions["b"] != 5 {
		t.Errorf("tail of %s: regions %v, want 5 changes of a and 5 of b", domain.HQStreamName, regions)
	}
}

func TestHQStreamSaysWhatIsWrong(t *testing.T) {
	url, _ := regionsNATS(t, 0)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-nats", url}, "-regions is empty"},
		{[]string{"-nats", url, "-regions", "Xiaonan"}, "lower-case letters"},
		{[]string{"-nats", url, "-regions", "a@"}, "domain after @ is empty"},
		{[]string{"-nats", url, "-regions", "a", "-replicas", "9"}, "-replicas 9: want 1 to 5"},
		{[]string{"-nats", url, "-regions", "a,a"}, "given twice"},
	} {
		_, errOut, err := runFieldctl(t, append([]string{"hq", "stream"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error()+errOut, c.want) {
			t.Errorf("hq stream %q: %v %s, want it to say %q", c.args, err, errOut, c.want)
		}
	}
	if _, errOut, err := runFieldctl(t, "hq", "tail", "-nats", url, "-stream", "NO.SUCH", "-n", "1"); err == nil || !strings.Contains(err.Error()+errOut, "-stream") {
		t.Errorf("tail -stream NO.SUCH: %v %s", err, errOut)
	}
}
