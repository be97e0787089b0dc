package bindtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
)

// sdkPkg is the package a phone app binds.
const sdkPkg = "github.com/fieldsync/fieldsync/mobile/fieldsync"

// The SDK's binding, generated once for the package's tests (gobind takes
// a few seconds) into a directory TestMain removes.
var (
	scratch    string
	bindOnce   sync.Once
	bindDir    string
	bindOutput string
	bindErr    error
)

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "fieldsync-bindtest-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(scratch)
	os.Exit(code)
}

// sdkBinding runs gobind on the SDK once and returns its output directory.
func sdkBinding(t *testing.T) (outdir, output string) {
	t.Helper()
	goCmd, root := goTool(t), moduleRoot(t)
	bindOnce.Do(func() {
		bindDir = filepath.Join(scratch, "sdk")
		bindOutput, bindErr = gobindInto(goCmd, root, sdkPkg, bindDir)
	})
	if bindErr != nil {
		t.Fatal(bindErr)
	}
	return bindDir, bindOutput
}

// TestGobindBindsTheWholeSDK: gobind generates Java and Objective-C for the
// SDK without a notice of anything skipped or unsupported, and the
// generated sources name every exported function, method, type, field and
// constant of the package (the list comes from go/doc, not from a hand).
func TestGobindBindsTheWholeSDK(t *testing.T) {
	out, output := sdkBinding(t)
	if notices := skipNotices(output, out); len(notices) > 0 {
		t.Errorf("gobind left %d things of %s out; gobind binds only signed integers, float64, bool, string, []byte, error, and pointers to exported structs and interfaces of those:\n%s",
			len(notices), sdkPkg, strings.Join(notices, "\n"))
	}
	name, list := exports(t, filepath.Join(moduleRoot(t), "mobile", "fieldsync"), sdkPkg)
	if name != "fieldsync" {
		t.Fatalf("the SDK's package is named %q; the README's Kotlin and Swift calls expect fieldsync", name)
	}
	kinds := map[string]int{}
	for _, e := range list {
		kinds[e.kind]++
	}
	// Open, Client, Listener and its two methods, ErrorCode, the codes:
	// far fewer than this means the export list itself went wrong.
	if kinds["func"] < 3 || kinds["method"] < 20 || kinds["const"] < 10 || kinds["interface"] < 1 {
		t.Fatalf("go/doc found only %v in %s: the export list is broken", kinds, sdkPkg)
	}
	if problems := missingNames(t, out, name, list); len(problems) > 0 {
		t.Errorf("%d exports of %s are missing from the generated sources:\n%s", len(problems), sdkPkg, strings.Join(problems, "\n"))
	}
	t.Logf("checked %d exports %v in java/org/fieldsync/fieldsync/*.java and src/gobind/Fieldsync.objc.h", len(list), kinds)
}

// results are the "RESULT name value" lines of one Driver run.
type results map[string]string

func (r results) get(t *testing.T, name string) string {
	t.Helper()
	v, ok := r[name]
	if !ok {
		t.Fatalf("the Java driver printed no result %q", name)
	}
	return v
}

// decode parses a result's JSON into v with the SDK's schema structs,
// rejecting names the schema does not have.
func (r results) decode(t *testing.T, name string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.get(t, name)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("result %s does not parse into %T: %v\n%s", name, v, err, r[name])
	}
}

func (r results) int(t *testing.T, name string) int {
	t.Helper()
	n, err := strconv.Atoi(r.get(t, name))
	if err != nil {
		t.Fatalf("result %s: %v", name, err)
	}
	return n
}

// wantCode checks that an SDK call the driver made threw, through JNI, an
// exception whose message starts with the given code.
func (r results) wantCode(t *testing.T, name, code string) {
	t.Helper()
	if got := r.get(t, name+".code"); got != code {
		t.Errorf("%s: error code %q, want %q (message: %s)", name, got, code, r[name+".message"])
	}
	if msg := r.get(t, name+".message"); !strings.HasPrefix(msg, code+": ") {
		t.Errorf("%s: the message %q does not start with %q", name, msg, code+": ")
	}
}

// driver runs one phase of testdata/Driver.java and returns its results,
// which it writes to DIR/PHASE.results (args[1] is DIR).
func driver(t *testing.T, j jdk, classes, lib string, args ...string) results {
	t.Helper()
	start := time.Now()
	stdout, stderr := runJava(t, j, classes, lib, 3*time.Minute, "Driver", args...)
	t.Logf("Driver %s: %v", args[0], time.Since(start).Round(time.Millisecond))
	// Standard output is the JVM's: -Xcheck:jni warns there, with a stack,
	// each time gobind's glue calls into Java without checking for a
	// pending exception afterwards (its generated code never does). Those
	// are gobind's, counted and shown; a JNI error is "FATAL ERROR in
	// native method" and ends the JVM, failing runJava; an exception
	// thrown on another thread (a listener's) is printed and fails here.
	warnings := map[string]int{}
	for _, line := range strings.Split(stdout+"\n"+stderr, "\n") {
		if w, ok := strings.CutPrefix(line, "WARNING in native method: "); ok {
			warnings[w]++
		}
		if strings.Contains(line, "Exception in thread") || strings.Contains(line, "FATAL ERROR") {
			t.Errorf("the Java driver's JVM printed: %s", line)
		}
	}
	for w, n := range warnings {
		t.Logf("-Xcheck:jni warned %d times: %s", n, w)
	}
	b, err := os.ReadFile(filepath.Join(args[1], args[0]+".results"))
	if err != nil {
		t.Fatalf("the Java driver's %s phase wrote no results: %v\nstandard output:\n%s", args[0], err, stdout)
	}
	r := results{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "RESULT "), " ")
		if !ok || !strings.HasPrefix(line, "RESULT ") {
			t.Errorf("the Java driver wrote a line that is not a result: %q", line)
			continue
		}
		r[name] = value
	}
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names)
	var all strings.Builder
	for _, name := range names {
		fmt.Fprintf(&all, "\n  %s %s", name, r[name])
	}
	t.Logf("Driver %s results:%s", args[0], all.String())
	if r["done"] != args[0] {
		t.Fatalf("the Java driver's %s phase did not finish (no \"RESULT done %s\")", args[0], args[0])
	}
	return r
}

func randomKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

// TestJavaDrivesTheSDK compiles the SDK's generated Java and
// testdata/Driver.java, builds the SDK into a host JNI library, and runs
// the driver in three processes against a real syncd (internal/testenv):
// two phones enroll from their codes as scanned (a member's and the
// village secretary's); with the server stopped, the member records a
// visit and both edit one household's phone number while SyncOnce fails
// with retry_later; with the server restarted on the same files and
// address, both sync, each holds the conflict, the secretary settles it
// with a new value, and the member's phone ends with the settled value and
// no conflict. A Go device enrolled afterwards sees the visit and the
// settled value on the server.
func TestJavaDrivesTheSDK(t *testing.T) {
	j := findJDK(t)
	gen, _ := sdkBinding(t)
	classes := compileJava(t, j, gen, filepath.Join("testdata", "Driver.java"))
	lib := buildJNILibrary(t, j, gen)

	srvDir := t.TempDir()
	e := testenv.Start(t, testenv.WithDir(srvDir))
	e.ImportSample()
	addr, token := e.Addr, e.AdminToken
	dir := t.TempDir()
	keyA, keyB := randomKey(t), randomKey(t)

	// Enroll, with the server up.
	r := driver(t, j, classes, lib, "enroll", dir, keyA, keyB, e.Code(testenv.Member), e.Code(testenv.Secretary))
	var before schema.Status
	r.decode(t, "a.status.before", &before)
	if before.Enrolled || before.Identity != nil {
		t.Errorf("a new replica's status says enrolled: %+v", before)
	}
	r.wantCode(t, "a.sync_before_enroll", fieldsync.CodeReenroll)
	var ida, idb schema.Identity
	r.decode(t, "a.identity", &ida)
	r.decode(t, "b.identity", &idb)
	if ida.UserID != testenv.Member || ida.UserName != "張國華" || ida.Role != "member" || ida.DeviceID == "" {
		t.Errorf("phone A's identity: %+v, want the member %s 張國華", ida, testenv.Member)
	}
	if idb.UserID != testenv.Secretary || idb.Role != "secretary" || idb.DeviceID == ida.DeviceID {
		t.Errorf("phone B's identity: %+v, want the secretary %s on a device of its own", idb, testenv.Secretary)
	}
	var rep schema.Report
	r.decode(t, "a.sync", &rep)
	if rep.Pulled < 3 || rep.Calls < 1 {
		t.Errorf("phone A's first sync: %+v, want the member's 3 households at least", rep)
	}
	var hh schema.Page[schema.Record]
	r.decode(t, "a.households", &hh)
	if hh.Total != 3 || len(hh.Items) != 3 || hh.Items[0].ID != "H001" || hh.Items[0].Fields["head"] != "張大山" {
		t.Errorf("phone A's households: %+v, want H001-H003 with H001's head 張大山", hh)
	}
	r.wantCode(t, "a.get_missing", fieldsync.CodeNotFound)
	r.wantCode(t, "a.bad_query", fieldsync.CodeInvalid)
	r.wantCode(t, "b.after_close", fieldsync.CodeClosed)
	// The replica is sealed with its key: another key, or none, is refused.
	r.wantCode(t, "a.open_wrong_key", fieldsync.CodeWrongKey)
	r.wantCode(t, "a.open_no_key", fieldsync.CodeWrongKey)

	// Offline: the server is down.
	e.Stop()
	r = driver(t, j, classes, lib, "offline", dir, keyA, keyB)
	visitID := r.get(t, "a.visit_id")
	var off schema.Status
	r.decode(t, "a.status.offline", &off)
	if !off.Enrolled || off.Pending != 2 {
		t.Errorf("phone A offline after a visit and an edit: %+v, want enrolled with 2 pending", off)
	}
	r.wantCode(t, "a.sync_offline", fieldsync.CodeRetryLater)
	if ms := r.int(t, "a.sync_offline.retry_after_ms"); ms <= 0 {
		t.Errorf("retry_later while the server is down says retry after %d ms, want > 0", ms)
	}
	r.decode(t, "a.status.after_failed_sync", &off)
	if off.Pending != 2 || off.LastErrorCode != fieldsync.CodeRetryLater || off.LastError == "" {
		t.Errorf("phone A's status after the failed sync: %+v, want 2 pending and last_error_code retry_later", off)
	}
	// The listener heard both local writes: a visit created, H001 updated.
	if n := r.int(t, "a.listener.data_count"); n < 2 {
		t.Errorf("phone A's listener heard %d data changes for 2 local writes", n)
	} else {
		var c0, c1 map[string]any
		r.decode(t, "a.listener.data.0", &c0)
		r.decode(t, "a.listener.data.1", &c1)
		if c0["source"] != "write" || c1["source"] != "write" {
			t.Errorf("phone A's listener: %v then %v, want two writes", c0, c1)
		}
	}

	// Online: the server is back on the same files and address.
	e2 := testenv.Start(t, testenv.WithDir(srvDir), testenv.WithAddr(addr), testenv.WithAdminToken(token))
	r = driver(t, j, classes, lib, "online", dir, keyA, keyB)
	r.decode(t, "a.sync.1", &rep)
	if rep.Pushed != 2 || rep.Rejected != 0 {
		t.Errorf("phone A's sync after the outage: %+v, want its 2 writes pushed, none rejected", rep)
	}
	var visits schema.Page[schema.Record]
	r.decode(t, "a.visits", &visits)
	if visits.Total != 1 || len(visits.Items) != 1 || visits.Items[0].ID != visitID || visits.Items[0].State != "synced" ||
		visits.Items[0].Fields["household_id"] != "H001" || visits.Items[0].Fields["needs"] != "屋顶漏雨" {
		t.Errorf("phone A's visits: %+v, want the visit %s to H001, synced", visits, visitID)
	}
	var mine schema.Page[schema.Household]
	r.decode(t, "a.my_households", &mine)
	due := map[string]bool{}
	for _, h := range mine.Items {
		due[h.ID] = h.Due
	}
	if len(due) != 3 || due["H001"] || !due["H002"] || !due["H003"] {
		t.Errorf("phone A's households this month: due %v, want H001 visited and H002, H003 due", due)
	}
	for _, who := range []string{"a", "b"} {
		var cs []schema.ConflictItem
		r.decode(t, who+".conflicts", &cs)
		if len(cs) != 1 || cs[0].RecordID != "H001" || cs[0].Field != "phone" || len(cs[0].Losing) != 1 {
			t.Errorf("phone %s's conflicts: %+v, want one on H001's phone", strings.ToUpper(who), cs)
		}
	}
	for _, name := range []string{"b.conflicts.after_settle", "a.conflicts.after_settle"} {
		var cs []schema.ConflictItem
		r.decode(t, name, &cs)
		if len(cs) != 0 {
			t.Errorf("%s: %+v, want none", name, cs)
		}
	}
	var h001 schema.Record
	r.decode(t, "a.h001", &h001)
	if h001.Fields["phone"] != "13800000033" || h001.ConflictCount != 0 || h001.State != "synced" {
		t.Errorf("H001 on phone A after the secretary settled: %+v, want phone 13800000033, no conflict, synced", h001)
	}
	if n := r.int(t, "a.listener.data_count"); n < 1 {
		t.Errorf("phone A's listener heard no data change from syncs that brought the settled value")
	}
	// Foreground mode heard B's write by a poke, and told the listener
	// from a thread of Go's, not the app's main thread.
	if r.get(t, "fa.foreground.seen") != "true" {
		t.Errorf("phone A in foreground mode never saw phone B's write of H002 (%s tries of 5 s each, with an interval of an hour): no poke arrived", r["fa.foreground.tries"])
	}
	var h002 schema.Record
	r.decode(t, "fa.foreground.h002", &h002)
	if want := r.get(t, "fa.foreground.phone"); h002.Fields["phone"] != want {
		t.Errorf("H002 on phone A in foreground mode: phone %q, want %q", h002.Fields["phone"], want)
	}
	var fst schema.Status
	r.decode(t, "fa.foreground.status", &fst)
	if !fst.Foreground {
		t.Errorf("phone A's status while in foreground mode: %+v, want foreground true", fst)
	}
	fromGo := 0
	for i := range r.int(t, "fa.listener.data_count") {
		var ch schema.Change
		r.decode(t, fmt.Sprintf("fa.listener.data.%d", i), &ch)
		if ch.Source == "sync" && r.get(t, fmt.Sprintf("fa.listener.data.%d.thread", i)) != "main" {
			fromGo++
		}
	}
	if fromGo == 0 {
		t.Errorf("phone A's listener heard no sync in foreground mode from a thread other than main")
	}
	t.Logf("foreground: B's write seen by A after %s try(ies), %s ms after B's sync; %d listener calls from Go's threads",
		r["fa.foreground.tries"], r["fa.foreground.wait_ms"], fromGo)

	// The server has it all: a Go device enrolled now sees the same.
	sec := e2.Device(testenv.Secretary)
	testenv.Sync(t, sec)
	it, err := sec.Get(visitID)
	if err != nil {
		t.Fatalf("the visit phone A recorded offline is not on the server: %v", err)
	}
	if it.Field("household_id") != "H001" {
		t.Errorf("the visit on the server: household %q, want H001", it.Field("household_id"))
	}
	h, err := sec.Get("H001")
	if err != nil {
		t.Fatal(err)
	}
	if h.Field("phone") != "13800000033" {
		t.Errorf("H001's phone on the server: %q, want the settled 13800000033", h.Field("phone"))
	}
}
