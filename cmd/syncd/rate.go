package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/server"
)

// Bounds on a rate flag, to catch typos: below minPerSecond a refused
// call would wait longer than ten minutes; above the maxima the limit
// does nothing a real client would notice.
const (
	minPerSecond = 0.1 / 60
	maxPerSecond = 100_000
	maxBurst     = 100_000
)

// rateFlag is a rate limit on the command line: "5/s,burst=20",
// "300/m", "0.5/s" or "off". Without ,burst= the burst is the
// default's (defBurst).
type rateFlag struct {
	off      bool
	n        float64 // calls per unit
	perMin   bool    // unit is a minute, else a second
	burst    int
	defBurst int
}

// newRateFlag is a flag holding l, written in calls a second.
func newRateFlag(l server.RateLimit) rateFlag {
	return rateFlag{n: l.PerSecond, burst: l.Burst, defBurst: l.Burst}
}

const rateSyntax = "want N/s or N/m with an optional ,burst=B (e.g. 5/s,burst=20), or off"

// Set parses s; the flag package adds the flag's name to an error.
func (r *rateFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		*r = rateFlag{off: true, defBurst: r.defBurst}
		return nil
	}
	rateText, burstText, hasBurst := strings.Cut(s, ",")
	num, unit, ok := strings.Cut(strings.TrimSpace(rateText), "/")
	if !ok || (unit != "s" && unit != "m") {
		return errors.New(rateSyntax)
	}
	num = strings.TrimSpace(num)
	n, err := strconv.ParseFloat(num, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return errors.New(rateSyntax)
	case err != nil || math.IsNaN(n) || math.IsInf(n, 0):
		return fmt.Errorf("rate %q is not a finite number; %s", num, rateSyntax)
	case n < 0:
		return fmt.Errorf("rate %s is negative: want a positive rate, or off", num)
	case n == 0:
		return errors.New("a zero rate would refuse every call after the burst: to turn the limit off, use off")
	}
	perSecond := n
	if unit == "m" {
		perSecond = n / 60
	}
	if perSecond < minPerSecond || perSecond > maxPerSecond {
		return fmt.Errorf("rate %s/%s is out of range: want 0.1/m to %d/s, or off", num, unit, maxPerSecond)
	}
	burst := r.defBurst
	if hasBurst {
		b, ok := strings.CutPrefix(strings.TrimSpace(burstText), "burst=")
		if !ok {
			return errors.New(rateSyntax)
		}
		if burst, err = strconv.Atoi(b); err != nil || burst < 1 || burst > maxBurst {
			return fmt.Errorf("burst %q: want a whole number from 1 to %d", b, maxBurst)
		}
	}
	*r = rateFlag{n: n, perMin: unit == "m", burst: burst, defBurst: r.defBurst}
	return nil
}

func (r *rateFlag) String() string {
	switch {
	case r.off:
		return "off"
	case r.n == 0: // the zero value, which the flag package asks for
		return ""
	}
	unit := "s"
	if r.perMin {
		unit = "m"
	}
	return fmt.Sprintf("%s/%s,burst=%d", strconv.FormatFloat(r.n, 'f', -1, 64), unit, r.burst)
}

// limit is the flag as the server takes it.
func (r rateFlag) limit() server.RateLimit {
	if r.off {
		return server.Unlimited
	}
	perSecond := r.n
	if r.perMin {
		perSecond = r.n / 60
	}
	return server.RateLimit{PerSecond: perSecond, Burst: r.burst}
}
