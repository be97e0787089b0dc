package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/server"
)

// Bounds on a quota flag, to catch typos: a quota under one record or
// 1 KiB a day would stop every device; above the maxima it does nothing.
const (
	maxQuotaRecords = 10_000_000
	minQuotaBytes   = 1 << 10
	maxQuotaBytes   = 1 << 40
)

// quotaFlag is a daily quota on the command line: "1000/day,16MiB",
// "1000/day" (the default's bytes) or "off". The zero value is the
// server's default.
type quotaFlag struct {
	q   server.Quota
	def server.Quota // for the bytes of "N/day"
}

const quotaSyntax = "want N/day with an optional ,SIZE (e.g. 1000/day,16MiB), or off"

// Set parses s; the flag package adds the flag's name to an error.
func (f *quotaFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		f.q = server.NoQuota
		return nil
	}
	recText, sizeText, hasSize := strings.Cut(s, ",")
	num, ok := strings.CutSuffix(strings.TrimSpace(recText), "/day")
	if !ok {
		return errors.New(quotaSyntax)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	switch {
	case err != nil:
		return fmt.Errorf("records %q: want a whole number of records a day; %s", num, quotaSyntax)
	case n == 0:
		return errors.New("a quota of 0 records would hold back every push: to turn the quota off, use off")
	case n < 0 || n > maxQuotaRecords:
		return fmt.Errorf("records %d: want 1 to %d a day, or off", n, maxQuotaRecords)
	}
	q := server.Quota{Records: n, Bytes: f.def.Bytes}
	if hasSize {
		var b server.ByteSize
		if err := b.Set(sizeText); err != nil {
			return fmt.Errorf("size %w", err)
		}
		if b < minQuotaBytes || b > maxQuotaBytes {
			return fmt.Errorf("size %s: want 1KiB to 1TiB a day", strings.TrimSpace(sizeText))
		}
		q.Bytes = int64(b)
	}
	f.q = q
	return nil
}

func (f *quotaFlag) String() string {
	switch {
	case f.q.Records < 0:
		return "off"
	case f.q.Records == 0: // the default (the usage says which)
		return ""
	}
	return fmt.Sprintf("%d/day,%s", f.q.Records, server.FormatBytes(f.q.Bytes))
}

// quota is the flag as the server takes it.
func (f quotaFlag) quota() server.Quota { return f.q }

// quotaFlags adds -device-quota and -user-quota to fs.
func (c *config) quotaFlags(fs *flag.FlagSet) {
	c.deviceQuota.def, c.userQuota.def = server.DefaultDeviceQuota, server.DefaultUserQuota
	const more = ": N/day with an optional ,SIZE (else the default's), or off. Counted per calendar day in China time (UTC+8), kept in the database. " +
		"A push past it is held on the device (ResourceExhausted with a RetryInfo until midnight); the device still pulls (default %s)"
	fs.Var(&c.deviceQuota, "device-quota", fmt.Sprintf("daily `quota` of records (mutations) and bytes each device may push"+more, showQuota(server.DefaultDeviceQuota)))
	fs.Var(&c.userQuota, "user-quota", fmt.Sprintf("daily `quota` of records and bytes all of one user's devices may push together"+more, showQuota(server.DefaultUserQuota)))
}

func showQuota(q server.Quota) string {
	f := quotaFlag{q: q}
	return f.String()
}
