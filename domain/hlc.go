package domain

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HLC is a hybrid logical clock reading: wall time in milliseconds, a
// counter for events within one millisecond, and the node (device id) that
// made it. Readings are totally ordered, and the order respects causality.
type HLC struct {
	Wall    int64 // Unix milliseconds
	Counter uint16
	Node    string
}

// The string form is fixed-width hex so that strings sort like readings:
// 12 hex digits of wall time, 4 of counter, '@', node.
const hlcPrefixLen = 12 + 4

// String encodes h so that comparing strings compares readings.
func (h HLC) String() string {
	return fmt.Sprintf("%012x%04x@%s", h.Wall, h.Counter, h.Node)
}

// IsZero reports whether h is the zero reading.
func (h HLC) IsZero() bool { return h.Wall == 0 && h.Counter == 0 && h.Node == "" }

// Compare returns -1, 0 or +1 as h is before, equal to or after o.
func (h HLC) Compare(o HLC) int {
	switch {
	case h.Wall != o.Wall:
		return cmp(h.Wall < o.Wall)
	case h.Counter != o.Counter:
		return cmp(h.Counter < o.Counter)
	case h.Node != o.Node:
		return cmp(h.Node < o.Node)
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}

// ParseHLC decodes the string form made by HLC.String.
func ParseHLC(s string) (HLC, error) {
	if len(s) < hlcPrefixLen+2 || s[hlcPrefixLen] != '@' {
		return HLC{}, fmt.Errorf("hlc %q: want 16 hex digits, '@' and a node id", s)
	}
	wall, err := strconv.ParseUint(s[:12], 16, 64)
	if err != nil {
		return HLC{}, fmt.Errorf("hlc %q: wall time is not hex", s)
	}
	ctr, err := strconv.ParseUint(s[12:16], 16, 16)
	if err != nil {
		return HLC{}, fmt.Errorf("hlc %q: counter is not hex", s)
	}
	node := s[hlcPrefixLen+1:]
	if !validToken(node, 64) {
		return HLC{}, fmt.Errorf("hlc %q: node must be 1-64 of [A-Za-z0-9_:-]", s)
	}
	if strings.ToLower(s[:16]) != s[:16] {
		return HLC{}, fmt.Errorf("hlc %q: hex digits must be lower case", s)
	}
	return HLC{Wall: int64(wall), Counter: uint16(ctr), Node: node}, nil
}

// MaxFutureSkew is how far ahead of the server's clock a timestamp may be
// and still win a merge as it is; the server clamps anything later. It keeps
// a phone whose clock runs days ahead from winning every edit.
const MaxFutureSkew = 5 * time.Minute

// ClampFuture returns h with its wall time cut to now+MaxFutureSkew if it
// lies further ahead.
func ClampFuture(h HLC, now time.Time) HLC {
	limit := now.Add(MaxFutureSkew).UnixMilli()
	if h.Wall > limit {
		h.Wall = limit
	}
	return h
}

// Clock makes HLC readings for one node. A device corrects its wall clock
// by the offset to the server's clock it saw at its last sync, and never
// goes backwards, even when the phone's clock does, except through Resync:
// a clock that ran ahead comes back to the server's time after a sync.
type Clock struct {
	mu     sync.Mutex
	node   string
	last   HLC
	offset time.Duration
	now    func() time.Time
}

// NewClock returns a clock for node that starts after last (the last
// reading the node persisted, or the zero HLC).
func NewClock(node string, last HLC, offset time.Duration, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{node: node, last: last, offset: offset, now: now}
}

// SetOffset sets the correction added to the local wall clock.
func (c *Clock) SetOffset(d time.Duration) {
	c.mu.Lock()
	c.offset = d
	c.mu.Unlock()
}

// Tick returns a new reading, later than every reading made or observed.
func (c *Clock) Tick() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	phys := c.now().Add(c.offset).UnixMilli()
	if phys > c.last.Wall {
		c.last = HLC{Wall: phys, Node: c.node}
	} else if c.last.Counter == 0xffff { // an observed or persisted full counter: +1 would wrap to 0
		c.last = HLC{Wall: c.last.Wall + 1, Node: c.node}
	} else {
		c.last = HLC{Wall: c.last.Wall, Counter: c.last.Counter + 1, Node: c.node}
		if c.last.Counter == 0xffff { // counter full: borrow the next millisecond
			c.last = HLC{Wall: c.last.Wall + 1, Node: c.node}
		}
	}
	return c.last
}

// Observe moves the clock past a reading seen from elsewhere.
func (c *Clock) Observe(h HLC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.Wall > c.last.Wall || (h.Wall == c.last.Wall && h.Counter > c.last.Counter) {
		c.last = HLC{Wall: h.Wall, Counter: h.Counter, Node: c.node}
	}
}

// Resync brings a clock that ran ahead back to the server's time, after a
// sync answered at serverNow: a last reading beyond the server's tolerance
// (serverNow+MaxFutureSkew) is cut to the end of that millisecond, so the
// next reading lies at most MaxFutureSkew (and a millisecond) ahead of the
// server's clock, and follows real time once that has passed.
//
// Call it only when none of the node's readings is still unacknowledged.
// Then every reading the server holds for the node was cut to its apply
// time plus MaxFutureSkew (ClampFuture), which is not after the limit
// here, so the node's next readings still sort after all its earlier ones
// (entries, for one, sort by clock). A reading still pending would be cut
// later, possibly past readings made in between.
func (c *Clock) Resync(serverNow time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit := serverNow.Add(MaxFutureSkew).UnixMilli(); c.last.Wall > limit {
		c.last = HLC{Wall: limit, Counter: 0xffff, Node: c.node}
	}
}

// Last returns the last reading made or observed, for persisting.
func (c *Clock) Last() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
