package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/cliflags"
)

// -retention (or SYNCD_RETENTION) takes days, a duration or off, at least
// a day, and says what it wants otherwise.
func TestRetentionFlag(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		args []string
		env  string
		want time.Duration
		err  string
	}{
		{want: 180 * day},
		{args: []string{"-retention", "90d"}, want: 90 * day},
		{args: []string{"-retention", "4320h"}, want: 180 * day},
		{args: []string{"-retention", "off"}, want: 0},
		{env: "30d", want: 30 * day},
		{args: []string{"-retention", "60d"}, env: "30d", want: 60 * day},
		{args: []string{"-retention", "3h"}, err: "at least 1d (or off)"},
		{args: []string{"-retention", "0d"}, err: "at least 1d (or off)"},
		{args: []string{"-retention", "half a year"}, err: "want a number of days like 180d, a duration like 4320h, or off"},
		{args: []string{"-retention", "-5d"}, err: "want a number of days like 180d"},
		{env: "forever", err: "SYNCD_RETENTION"},
	} {
		t.Setenv("SYNCD_RETENTION", tt.env)
		c := defaultConfig()
		fs := c.flagSet(io.Discard)
		err := fs.Parse(tt.args)
		if err == nil {
			err = cliflags.ApplyEnv(fs, "SYNCD")
		}
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q env %q: %v, want an error saying %q", tt.args, tt.env, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%q env %q: %v", tt.args, tt.env, err)
		case tt.err == "" && c.retention.window() != tt.want:
			t.Errorf("%q env %q: window %v, want %v", tt.args, tt.env, c.retention.window(), tt.want)
		}
	}
}
