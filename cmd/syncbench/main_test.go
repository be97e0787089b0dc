package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs a tiny city through every scenario with the server in
// process and checks that nothing acknowledged was lost or duplicated. It
// asserts no timing: benchmarks are not timed tests.
func TestSmoke(t *testing.T) {
	t.Setenv("FIELDSYNC_HQTEST_CACHE", t.TempDir()) // the year's city (-hq-year), tiny, not kept
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := append([]string{"-server", "inproc", "-dir", t.TempDir()}, tinyCity...)
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("syncbench: %v\nstderr:\n%s\nstdout:\n%s", err, errOut.String(), out.String())
	}
	seen := checkRun(t, out.String())
	// The writer's figures and the handshake bytes are read, not guessed:
	// the storm committed something, and each of its devices dialled anew.
	storm := seen["storm"]
	extra, _ := storm["extra"].(map[string]any)
	if c, _ := extra["commits"].(float64); c < 1 {
		t.Errorf("storm: commits %v, want at least 1 (extra %v)", extra["commits"], extra)
	}
	if w, _ := extra["writes_per_commit"].(float64); w < 1 {
		t.Errorf("storm: writes_per_commit %v, want at least 1", extra["writes_per_commit"])
	}
	hs, _ := storm["tls_handshake_bytes"].(float64)
	wire, _ := storm["wire_bytes"].(float64)
	if hs <= 0 || hs >= wire {
		t.Errorf("storm: %v TLS handshake bytes of %v on the wire; want some, and fewer than all", hs, wire)
	}
}

// tinyCity is the smoke test's city and scenario sizes.
var tinyCity = []string{"-households", "40", "-members", "6", "-grids", "2", "-real", "1",
	"-concurrency", "4", "-mutations", "5", "-burst-syncs", "2", "-single-syncs", "5",
	"-trickle-rate", "50", "-trickle-duration", "200ms", "-trickle-devices", "3", "-skip-limits", "-json"}

// checkRun asserts that a -json run ran every scenario with no error and
// nothing lost or duplicated; it returns the scenarios' objects by name.
func checkRun(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	seen := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		name, _ := obj["scenario"].(string)
		seen[name] = obj
		if name == "check" {
			check := obj["check"].(map[string]any)
			if check["lost"].(float64) != 0 || check["duplicated"].(float64) != 0 {
				t.Errorf("check: %v", check)
			}
			if check["acked"].(float64) == 0 {
				t.Errorf("check: nothing was acknowledged: %v", check)
			}
			continue
		}
		if name == "limits" {
			continue
		}
		if name == "hq" {
			// HQ's read model followed the storm and the page answered,
			// on the followed model and on the year's city.
			h, _ := obj["hq"].(map[string]any)
			for _, k := range []string{"initial_changes", "storm_changes"} {
				if n, _ := h[k].(float64); n <= 0 {
					t.Errorf("hq: %s %v, want more than 0 (%v)", k, h[k], h)
				}
			}
			for _, k := range []string{"coverage_page_followed_ms", "coverage_page_year_ms"} {
				if l, _ := h[k].([]any); len(l) == 0 {
					t.Errorf("hq: no %s (%v)", k, h)
				}
			}
			if h["notes"] != nil {
				t.Errorf("hq: %v", h["notes"])
			}
			continue
		}
		if obj["errors"].(float64) != 0 || obj["lost"].(float64) != 0 || obj["duplicated"].(float64) != 0 {
			t.Errorf("%s: %v", name, line)
		}
	}
	for _, s := range []string{"bootstrap", "export", "storm", "hq", "burst", "trickle", "single", "photos", "check"} {
		if seen[s] == nil {
			t.Errorf("no JSON object for %s in:\n%s", s, out)
		}
	}
	return seen
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "storm") {
		t.Fatalf("-h: err %v, usage:\n%s", err, errOut.String())
	}
}
