package main

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The groups' flags come from FIELDCTL_<FLAG> when not on the command
// line; a bad value names the variable.
func TestEnvironmentSetsGroupFlags(t *testing.T) {
	dir := t.TempDir()
	fromEnv, fromFlag := filepath.Join(dir, "env.db"), filepath.Join(dir, "flag.db")
	t.Setenv("FIELDCTL_DB", fromEnv)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"device", "status"}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), fromEnv) {
		t.Errorf("FIELDCTL_DB=%s: %v; want the device database taken from it", fromEnv, err)
	}
	err = run(context.Background(), []string{"device", "-db", fromFlag, "status"}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), fromFlag) || strings.Contains(err.Error(), fromEnv) {
		t.Errorf("-db over FIELDCTL_DB: %v; want the command line's %s", err, fromFlag)
	}
	t.Setenv("FIELDCTL_PLAINTEXT", "maybe")
	err = run(context.Background(), []string{"admin", "devices"}, nil, &out, &errb)
	if code := exitCode(err, &errb); code != 2 || !strings.Contains(errb.String(), `FIELDCTL_PLAINTEXT="maybe"`) {
		t.Errorf("FIELDCTL_PLAINTEXT=maybe: exit %d, %q; want 2 and the variable named", code, errb.String())
	}
	errb.Reset()
	if err := run(context.Background(), []string{"admin", "-h"}, nil, &out, &errb); exitCode(err, &errb) != 0 || !strings.Contains(errb.String(), "FIELDCTL_TOKEN_FILE") {
		t.Errorf("fieldctl admin -h does not mention the environment:\n%s", errb.String())
	}
}

func TestVersionFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "fieldctl ") || !strings.Contains(got, runtime.Version()) {
		t.Errorf("fieldctl -version = %q", got)
	}
}
