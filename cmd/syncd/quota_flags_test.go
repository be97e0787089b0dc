package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/server"
)

// TestQuotaFlags parses -device-quota and -user-quota through syncd's own
// flag set: what the server gets, and errors that name the flag and say
// what is allowed.
func TestQuotaFlags(t *testing.T) {
	cfg := defaultConfig()
	if err := cfg.flagSet(io.Discard).Parse(nil); err != nil {
		t.Fatal(err)
	}
	if cfg.deviceQuota.quota() != (server.Quota{}) || cfg.userQuota.quota() != (server.Quota{}) {
		t.Fatalf("without the flags the server gets %+v and %+v, want the zero value (its defaults)", cfg.deviceQuota.quota(), cfg.userQuota.quota())
	}
	valid := []struct {
		flag, in string
		want     server.Quota
		shown    string
	}{
		{"device-quota", "1000/day,16MiB", server.Quota{Records: 1000, Bytes: 16 << 20}, "1000/day,16MiB"},
		{"device-quota", " 50/day , 512KiB ", server.Quota{Records: 50, Bytes: 512 << 10}, "50/day,512KiB"},
		{"device-quota", "200/day", server.Quota{Records: 200, Bytes: server.DefaultDeviceQuota.Bytes}, "200/day,16MiB"},
		{"user-quota", "200/day", server.Quota{Records: 200, Bytes: server.DefaultUserQuota.Bytes}, "200/day,32MiB"},
		{"user-quota", "3000/day,1G", server.Quota{Records: 3000, Bytes: 1 << 30}, "3000/day,1GiB"},
		{"device-quota", "off", server.NoQuota, "off"},
		{"user-quota", "OFF", server.NoQuota, "off"},
	}
	for _, tt := range valid {
		cfg := defaultConfig()
		if err := cfg.flagSet(io.Discard).Parse([]string{"-" + tt.flag, tt.in}); err != nil {
			t.Fatalf("-%s %q: %v", tt.flag, tt.in, err)
		}
		got := map[string]*quotaFlag{"device-quota": &cfg.deviceQuota, "user-quota": &cfg.userQuota}[tt.flag]
		if got.quota() != tt.want || got.String() != tt.shown {
			t.Errorf("-%s %q: server gets %+v shown %q, want %+v shown %q", tt.flag, tt.in, got.quota(), got.String(), tt.want, tt.shown)
		}
	}
	invalid := []struct{ in, want string }{
		{"1000", "want N/day with an optional ,SIZE (e.g. 1000/day,16MiB), or off"},
		{"1000/d", "want N/day"},
		{"", "want N/day"},
		{"many/day", "want a whole number of records a day"},
		{"0/day", "use off"},
		{"-5/day", "want 1 to 10000000 a day"},
		{"1000/day,lots", "want a positive size"},
		{"1000/day,100B", "want 1KiB to 1TiB a day"},
	}
	for _, flagName := range []string{"device-quota", "user-quota"} {
		for _, tt := range invalid {
			cfg := defaultConfig()
			var stderr bytes.Buffer
			err := cfg.flagSet(&stderr).Parse([]string{"-" + flagName, tt.in})
			if err == nil {
				t.Fatalf("-%s %q: accepted", flagName, tt.in)
			}
			if want := fmt.Sprintf("invalid value %q for flag -%s: ", tt.in, flagName); !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("-%s %q: %v; want it to start %q and say %q", flagName, tt.in, err, want, tt.want)
			}
		}
	}
}
