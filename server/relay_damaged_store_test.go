package server_test

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
)

// copyDir copies a stopped server's files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// msgsDir is where the embedded JetStream keeps the changelog's blocks.
func msgsDir(dataDir string) string {
	return filepath.Join(dataDir, "nats", "jetstream", "$G", "streams", domain.StreamName, "msgs")
}

// blocks lists the stream's block files in order.
func blocks(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(msgsDir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".blk") {
			out = append(out, filepath.Join(msgsDir(dataDir), e.Name()))
		}
	}
	// 1.blk before 2.blk before 10.blk.
	slices.SortFunc(out, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return out
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func zeroRange(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
}

// A JetStream store damaged while syncd was stopped: the next start finds
// it out (the whole check: counts, first and last message and a spread
// sample against SQLite) and rebuilds the stream from SQLite.
func TestRelayRebuildsAStoreDamagedWhileStopped(t *testing.T) {
	// One server's files with a changelog of two blocks (8 MiB each at
	// most), copied for each damage.
	base := t.TempDir()
	logs := &logBuffer{}
	e := testenv.Start(t, withLog(logs), testenv.WithDir(base))
	e.ImportSample()
	for _, p := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"} {
		addHouseholds(t, e, "H"+p+"-", 2000)
	}
	waitStreamMatchesDB(t, e, logs)
	e.Stop()
	if n := len(blocks(t, base)); n < 2 {
		t.Fatalf("the stream has %d block(s); the test needs at least 2", n)
	}

	cases := []struct {
		name   string
		damage func(t *testing.T, blks []string)
	}{
		{"last block deleted", func(t *testing.T, blks []string) { os.Remove(blks[len(blks)-1]) }},
		{"last block cut", func(t *testing.T, blks []string) { truncateHalf(t, blks[len(blks)-1]) }},
		{"first block deleted", func(t *testing.T, blks []string) { os.Remove(blks[0]) }},
		{"first block cut", func(t *testing.T, blks []string) { truncateHalf(t, blks[0]) }},
		{"first block zeroed in the middle", func(t *testing.T, blks []string) { zeroRange(t, blks[0], 1<<20, 1<<20) }},
		{"first block zeroed from the start", func(t *testing.T, blks []string) { zeroRange(t, blks[0], 0, 1<<20) }},
		{"index deleted", func(t *testing.T, blks []string) { os.Remove(filepath.Join(filepath.Dir(blks[0]), "index.db")) }},
		{"index deleted and last block cut", func(t *testing.T, blks []string) {
			os.Remove(filepath.Join(filepath.Dir(blks[0]), "index.db"))
			truncateHalf(t, blks[len(blks)-1])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			tc.damage(t, blocks(t, dir))
			logs := &logBuffer{}
			e := testenv.Start(t, withLog(logs), testenv.WithDir(dir))
			waitStreamMatchesDB(t, e, logs)
			t.Logf("relay: %s", firstLine(logs.String(), "did not match"))
			addHouseholds(t, e, "HN", 3)
			waitStreamMatchesDB(t, e, logs)
		})
	}
}

// firstLine is the first log line holding s ("" if none).
func firstLine(log, s string) string {
	for l := range strings.Lines(log) {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
