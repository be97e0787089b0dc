package cliflags

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func newSet() (*flag.FlagSet, *string, *time.Duration, *bool) {
	fs := flag.NewFlagSet("syncd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("nats-listen", "127.0.0.1:4222", "")
	d := fs.Duration("backup-interval", time.Second, "")
	v := fs.Bool("version", false, "")
	return fs, listen, d, v
}

func TestEnvSetsAFlagAndTheCommandLineWins(t *testing.T) {
	t.Setenv("SYNCD_NATS_LISTEN", "127.0.0.1:5222")
	t.Setenv("SYNCD_BACKUP_INTERVAL", "5s")
	t.Setenv("SYNCD_VERSION", "true")
	fs, listen, d, v := newSet()
	if err := fs.Parse([]string{"-backup-interval", "7s"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, "SYNCD"); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:5222" {
		t.Errorf("-nats-listen = %q, want the environment's 127.0.0.1:5222", *listen)
	}
	if *d != 7*time.Second {
		t.Errorf("-backup-interval = %v, want the command line's 7s over the environment's 5s", *d)
	}
	if *v {
		t.Error("SYNCD_VERSION set -version: it asks for something once, the environment must not")
	}
}

func TestEmptyEnvIsUnset(t *testing.T) {
	t.Setenv("SYNCD_NATS_LISTEN", "")
	fs, listen, _, _ := newSet()
	fs.Parse(nil)
	if err := ApplyEnv(fs, "SYNCD"); err != nil || *listen != "127.0.0.1:4222" {
		t.Errorf("empty SYNCD_NATS_LISTEN: %q, %v; want the default", *listen, err)
	}
}

func TestBadEnvValueNamesTheVariable(t *testing.T) {
	t.Setenv("SYNCD_BACKUP_INTERVAL", "often")
	fs, _, _, _ := newSet()
	fs.Parse(nil)
	err := ApplyEnv(fs, "SYNCD")
	if err == nil {
		t.Fatal("SYNCD_BACKUP_INTERVAL=often accepted")
	}
	for _, want := range []string{"SYNCD_BACKUP_INTERVAL", `"often"`, "-backup-interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("FIELDCTL", "token-file"); got != "FIELDCTL_TOKEN_FILE" {
		t.Errorf("EnvName = %q", got)
	}
}
