package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegionFlags: -region takes a region name (else says what one is,
// naming the flag, from the command line and from SYNCD_REGION);
// -changelog-replicas takes 1 to 5, more than 1 only with an external
// NATS, and is marked as given only when given.
func TestRegionFlags(t *testing.T) {
	cfg := defaultConfig()
	fs := cfg.flagSet(io.Discard)
	if err := fs.Parse([]string{"-region", "xiaonan", "-changelog-replicas", "3"}); err != nil {
		t.Fatal(err)
	}
	cfg.nats.explicit(fs)
	if cfg.region != "xiaonan" || cfg.nats.limits.Replicas != 3 || !cfg.nats.limits.SetReplicas {
		t.Fatalf("region %q limits %+v", cfg.region, cfg.nats.limits)
	}
	if err := cfg.nats.check(true, 0); err != nil {
		t.Fatalf("3 replicas on an external NATS: %v", err)
	}
	if err := cfg.nats.check(false, 0); err == nil || !strings.Contains(err.Error(), "-changelog-replicas 3: the embedded NATS is one server") {
		t.Fatalf("3 replicas on the embedded NATS: %v", err)
	}

	cfg = defaultConfig()
	fs = cfg.flagSet(io.Discard)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg.nats.explicit(fs)
	if cfg.region != "" || cfg.nats.limits.SetReplicas || cfg.nats.limits.Replicas != 1 {
		t.Fatalf("defaults: region %q limits %+v", cfg.region, cfg.nats.limits)
	}

	for _, n := range []string{"0", "6", "-1"} {
		cfg := defaultConfig()
		fs := cfg.flagSet(io.Discard)
		if err := fs.Parse([]string{"-changelog-replicas", n}); err != nil {
			t.Fatal(err)
		}
		cfg.nats.explicit(fs)
		if err := cfg.nats.check(true, 0); err == nil || !strings.Contains(err.Error(), "-changelog-replicas "+n+": want 1 to 5") {
			t.Errorf("-changelog-replicas %s: %v", n, err)
		}
	}

	for _, bad := range []string{"Xiaonan", "1abc", "xiao-nan", strings.Repeat("a", 33)} {
		cfg := defaultConfig()
		err := cfg.flagSet(io.Discard).Parse([]string{"-region", bad})
		if err == nil || !strings.Contains(err.Error(), "-region") || !strings.Contains(err.Error(), bad) {
			t.Errorf("-region %q: %v, want a refusal naming the flag", bad, err)
		}
	}
	t.Setenv("SYNCD_REGION", "Bad Region")
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-data", t.TempDir()}, &stderr, &stderr)
	if err == nil || !strings.Contains(err.Error(), "SYNCD_REGION") || !strings.Contains(err.Error(), "lower-case letters") {
		t.Fatalf("SYNCD_REGION=\"Bad Region\": %v", err)
	}
}

// TestHelpNamesTheRegionFlagsAndNats: syncd -h lists -region and
// -changelog-replicas and the nats command; syncd nats without -config
// says what it needs.
func TestHelpNamesTheRegionFlagsAndNats(t *testing.T) {
	var out bytes.Buffer
	_ = run(context.Background(), []string{"-h"}, &out, &out)
	for _, want := range []string{"-region region", "FIELDSYNC_CHANGES_<REGION>", "-changelog-replicas servers", "syncd nats -config FILE"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("syncd -h lacks %q", want)
		}
	}
	err := run(context.Background(), []string{"nats"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "-config FILE is required") {
		t.Fatalf("syncd nats without -config: %v", err)
	}
	err = run(context.Background(), []string{"nats", "-config", "/nonexistent/nats.conf"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/nats.conf") {
		t.Fatalf("syncd nats with a missing file: %v", err)
	}
	noJS := filepath.Join(t.TempDir(), "nojs.conf")
	if err := os.WriteFile(noJS, []byte("listen: 127.0.0.1:-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"nats", "-config", noJS}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "has no jetstream { } block") {
		t.Fatalf("syncd nats without JetStream: %v", err)
	}
}
