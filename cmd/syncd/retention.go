package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/fieldsync/fieldsync/internal/syncd"
)

// retentionFlag is -retention: a window (180d, 4320h) or off. The zero
// value is the default, syncd.DefaultRetention.
type retentionFlag struct {
	d   time.Duration
	set bool
}

func (f *retentionFlag) window() time.Duration {
	if !f.set {
		return syncd.DefaultRetention
	}
	return f.d
}

func (f *retentionFlag) String() string {
	if f == nil {
		return ""
	}
	switch w := f.window(); {
	case w == 0:
		return "off"
	case w%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", w/(24*time.Hour))
	default:
		return w.String()
	}
}

func (f *retentionFlag) Set(s string) error {
	d, err := syncd.ParseRetention(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

func (c *config) retentionFlags(fs *flag.FlagSet) {
	fs.Var(&c.retention, "retention", "`window` after which history only late devices need is compacted: marks of records that left a bucket, changelog rows the relay published, kept mutation results; e.g. 180d or 4320h (at least 1d), or off (default 180d). A device offline longer reads again what it must and loses nothing")
}
