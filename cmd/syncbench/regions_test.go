package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the server child, as syncbench's own
// binary is (-scenario regions runs each region's syncd in one).
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childMain(dir))
	}
	os.Exit(m.Run())
}

// TestRegionsSmoke runs -scenario regions at a tiny size: a 3-node NATS
// cluster, two regions' syncds (child processes: the test binary
// re-executed, see TestMain) storming at once, HQ's model on FIELDSYNC_HQ;
// the run's own check must pass (every acknowledged mutation on its
// server, in its region's stream, in FIELDSYNC_HQ once and in order, in
// HQ's model). No timing is asserted.
func TestRegionsSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-scenario", "regions", "-regions", "xiaonan,yunmeng", "-dir", t.TempDir(),
		"-households", "30", "-members", "5", "-grids", "2", "-real", "1", "-concurrency", "3", "-mutations", "4", "-json"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("syncbench: %v\nstderr:\n%s\nstdout:\n%s", err, errOut.String(), out.String())
	}
	regions := map[string]map[string]any{}
	var check map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		switch obj["scenario"] {
		case "regions":
			regions[obj["region"].(string)] = obj
		case "check":
			check = obj
		}
	}
	if check == nil || check["ok"] != true || check["acked"].(float64) == 0 {
		t.Fatalf("check: %v\nstderr:\n%s", check, errOut.String())
	}
	for _, r := range []string{"xiaonan", "yunmeng"} {
		f := regions[r]
		if f == nil {
			t.Fatalf("no figures for region %s in:\n%s", r, out.String())
		}
		storm, _ := f["storm"].(map[string]any)
		if storm["syncs"].(float64) != 5 || storm["errors"].(float64) != 0 {
			t.Errorf("%s: storm %v, want 5 syncs and no error", r, storm)
		}
		// FIELDSYNC_HQ holds exactly the region's stream.
		if f["hq_messages"] != f["region_stream_messages"] || f["hq_messages"].(float64) == 0 {
			t.Errorf("%s: FIELDSYNC_HQ %v messages, region stream %v", r, f["hq_messages"], f["region_stream_messages"])
		}
		if f["stream"] != "FIELDSYNC_CHANGES_"+strings.ToUpper(r) {
			t.Errorf("%s: stream %v", r, f["stream"])
		}
		for _, k := range []string{"relay_lag", "hq_lag", "ack_to_stored", "ack_to_hq_applied"} {
			if l, _ := f[k].(map[string]any); l["samples"].(float64) == 0 {
				t.Errorf("%s: %s has no samples: %v", r, k, f[k])
			}
		}
	}
}

func TestRegionsFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"-scenario regions -regions Xiaonan", "-regions"},
		{"-scenario regions -regions a,a", "twice"},
		{"-scenario regions -nats-nodes 0", "-nats-nodes"},
		{"-scenario regions -changelog-replicas 4", "-changelog-replicas"},
		{"-scenario regions -server inproc", "-server"},
		{"-scenario storm,regions", "alone"},
		{"-scenario storm -regions a", "only with -scenario regions"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), strings.Fields(tc.args), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
