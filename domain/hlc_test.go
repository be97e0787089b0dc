package domain_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/domain"
)

// genHLC draws readings whose string form is well defined: wall times that
// fit in 12 hex digits, any counter, and valid node ids.
func genHLC() *rapid.Generator[domain.HLC] {
	return rapid.Custom(func(t *rapid.T) domain.HLC {
		return domain.HLC{
			// Small walls make ties likely, so counters and nodes get compared.
			Wall: rapid.OneOf(
				rapid.Int64Range(0, 3),
				rapid.Int64Range(0, 1<<48-1),
			).Draw(t, "wall"),
			Counter: rapid.OneOf(rapid.Uint16Range(0, 2), rapid.Uint16()).Draw(t, "counter"),
			Node:    rapid.StringMatching(`[A-Za-z0-9][A-Za-z0-9_:-]{0,8}`).Draw(t, "node"),
		}
	})
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestHLCStringRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    domain.HLC
		want string
	}{
		{"zero wall", domain.HLC{Node: "a"}, "0000000000000000@a"},
		{"typical", domain.HLC{Wall: 1732600000000, Counter: 3, Node: "dev-7"}, "01936701ee000003@dev-7"},
		{"max", domain.HLC{Wall: 1<<48 - 1, Counter: 0xffff, Node: strings.Repeat("z", 64)}, "ffffffffffffffff@" + strings.Repeat("z", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			got := mustParseHLC(t, tt.want)
			if got != tt.h {
				t.Fatalf("ParseHLC(%q) = %+v, want %+v", tt.want, got, tt.h)
			}
		})
	}
}

func TestHLCStringOrderIsCompareOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genHLC().Draw(t, "a")
		b := genHLC().Draw(t, "b")
		as, bs := a.String(), b.String()
		if got, want := sign(strings.Compare(as, bs)), a.Compare(b); got != want {
			t.Fatalf("strings.Compare(%q, %q) = %d, a.Compare(b) = %d", as, bs, got, want)
		}
		if got, want := b.Compare(a), -a.Compare(b); got != want {
			t.Fatalf("b.Compare(a) = %d, want %d", got, want)
		}
		back, err := domain.ParseHLC(as)
		if err != nil {
			t.Fatalf("ParseHLC(%q): %v", as, err)
		}
		if back != a {
			t.Fatalf("ParseHLC(%q) = %+v, want %+v", as, back, a)
		}
	})
}

func TestParseHLCRejectsMalformed(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "want 16 hex digits"},
		{"too short", "0193692d6e00@a", "want 16 hex digits"},
		{"15 digits", "0193692d6e00000@a", "want 16 hex digits"},
		{"17 digits", "0193692d6e0000003@a", "want 16 hex digits"},
		{"no node", "0193692d6e000003@", "want 16 hex digits"},
		{"missing @", "0193692d6e000003-a", "want 16 hex digits"},
		{"upper-case wall", "0193692D6E000003@a", "lower case"},
		{"upper-case counter", "0193692d6e00000A@a", "lower case"},
		{"non-hex wall", "0193692g6e000003@a", "wall time is not hex"},
		{"non-hex counter", "0193692d6e00x003@a", "counter is not hex"},
		{"signed wall", "+193692d6e000003@a", "wall time is not hex"},
		{"node with dot", "0193692d6e000003@a.b", "node must be"},
		{"node starts with dash", "0193692d6e000003@-a", "node must be"},
		{"node with space", "0193692d6e000003@a b", "node must be"},
		{"node with @", "0193692d6e000003@a@b", "node must be"},
		{"node too long", "0193692d6e000003@" + strings.Repeat("n", 65), "node must be"},
		{"chinese node", "0193692d6e000003@设备", "node must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.ParseHLC(tt.in)
			if err == nil {
				t.Fatalf("ParseHLC(%q) = %+v, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseHLC(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if got != (domain.HLC{}) {
				t.Fatalf("ParseHLC(%q) = %+v with an error, want the zero HLC", tt.in, got)
			}
		})
	}
}

// fakeNow is a wall clock that a test moves by hand.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

var t0 = time.Date(2024, 11, 26, 8, 0, 0, 0, time.UTC)

func TestClockTickStrictlyIncreasing(t *testing.T) {
	clk := &fakeNow{t: t0}
	c := domain.NewClock("phone1", domain.HLC{}, 0, clk.now)

	steps := []time.Duration{
		0, 0, time.Millisecond, // same millisecond, then forward
		-3 * 24 * time.Hour, // the phone's clock jumps back three days
		0, time.Hour,        // still behind the last reading
		-30 * 24 * time.Hour,         // and back a month
		3*24*time.Hour + time.Minute, // past the first reading again
	}
	prev := c.Tick()
	if want := (domain.HLC{Wall: t0.UnixMilli(), Node: "phone1"}); prev != want {
		t.Fatalf("first Tick() = %+v, want %+v", prev, want)
	}
	at := t0
	for i, d := range steps {
		at = at.Add(d)
		clk.set(at)
		got := c.Tick()
		if got.Compare(prev) <= 0 || got.String() <= prev.String() {
			t.Fatalf("step %d (now %v): Tick() = %v, not after %v", i, at, got, prev)
		}
		if got.Node != "phone1" {
			t.Fatalf("step %d: Tick().Node = %q, want phone1", i, got.Node)
		}
		if got != c.Last() {
			t.Fatalf("step %d: Last() = %v, want %v", i, c.Last(), got)
		}
		prev = got
	}
	// While the wall clock lagged, only the counter moved.
	clk.set(t0.Add(-24 * time.Hour))
	before := c.Last()
	got := c.Tick()
	want := domain.HLC{Wall: before.Wall, Counter: before.Counter + 1, Node: "phone1"}
	if got != want {
		t.Fatalf("Tick() behind the last reading = %+v, want %+v", got, want)
	}
}

func TestClockTickWhenCounterIsFull(t *testing.T) {
	clk := &fakeNow{t: t0.Add(-24 * time.Hour)} // the phone is a day behind
	wall := t0.UnixMilli()
	tests := []struct {
		name    string
		counter uint16
		want    domain.HLC
	}{
		{"one below full", 0xfffe, domain.HLC{Wall: wall + 1, Node: "phone1"}},
		{"full", 0xffff, domain.HLC{Wall: wall + 1, Node: "phone1"}},
	}
	for _, tt := range tests {
		t.Run("observed "+tt.name, func(t *testing.T) {
			c := domain.NewClock("phone1", domain.HLC{}, 0, clk.now)
			remote := domain.HLC{Wall: wall, Counter: tt.counter, Node: "server"}
			c.Observe(remote)
			got := c.Tick()
			if got.Compare(remote) <= 0 {
				t.Fatalf("Tick() = %+v, not after observed %+v", got, remote)
			}
			if got != tt.want {
				t.Fatalf("Tick() = %+v, want %+v", got, tt.want)
			}
		})
		t.Run("persisted "+tt.name, func(t *testing.T) {
			last := domain.HLC{Wall: wall, Counter: tt.counter, Node: "phone1"}
			c := domain.NewClock("phone1", last, 0, clk.now)
			if got := c.Tick(); got != tt.want {
				t.Fatalf("Tick() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClockTickConcurrent(t *testing.T) {
	c := domain.NewClock("phone1", domain.HLC{}, 0, func() time.Time { return t0 })
	const workers, each = 8, 500
	out := make(chan domain.HLC, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				out <- c.Tick()
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := map[domain.HLC]bool{}
	for h := range out {
		if seen[h] {
			t.Fatalf("Tick() returned %v twice", h)
		}
		seen[h] = true
	}
	if got, want := len(seen), workers*each; got != want {
		t.Fatalf("got %d distinct readings, want %d", got, want)
	}
}

func TestClockObserve(t *testing.T) {
	clk := &fakeNow{t: t0}
	tests := []struct {
		name     string
		remote   domain.HLC
		wantLast domain.HLC // after Observe
		wantTick domain.HLC // the Tick after that
	}{
		{
			name:     "remote a day ahead",
			remote:   domain.HLC{Wall: t0.Add(24 * time.Hour).UnixMilli(), Counter: 4, Node: "server"},
			wantLast: domain.HLC{Wall: t0.Add(24 * time.Hour).UnixMilli(), Counter: 4, Node: "phone1"},
			wantTick: domain.HLC{Wall: t0.Add(24 * time.Hour).UnixMilli(), Counter: 5, Node: "phone1"},
		},
		{
			name:     "same millisecond, higher counter",
			remote:   domain.HLC{Wall: t0.UnixMilli(), Counter: 9, Node: "server"},
			wantLast: domain.HLC{Wall: t0.UnixMilli(), Counter: 9, Node: "phone1"},
			wantTick: domain.HLC{Wall: t0.UnixMilli(), Counter: 10, Node: "phone1"},
		},
		{
			name:     "remote behind changes nothing",
			remote:   domain.HLC{Wall: t0.Add(-time.Hour).UnixMilli(), Counter: 99, Node: "server"},
			wantLast: domain.HLC{Wall: t0.UnixMilli(), Node: "phone1"},
			wantTick: domain.HLC{Wall: t0.UnixMilli(), Counter: 1, Node: "phone1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := domain.NewClock("phone1", domain.HLC{}, 0, clk.now)
			c.Tick() // {t0, 0}
			c.Observe(tt.remote)
			if got := c.Last(); got != tt.wantLast {
				t.Fatalf("Last() after Observe = %+v, want %+v", got, tt.wantLast)
			}
			got := c.Tick()
			if got != tt.wantTick {
				t.Fatalf("Tick() after Observe = %+v, want %+v", got, tt.wantTick)
			}
			if got.Compare(tt.remote) <= 0 {
				t.Fatalf("Tick() = %+v, not after remote %+v", got, tt.remote)
			}
		})
	}
}

func TestClockOffset(t *testing.T) {
	c := domain.NewClock("phone1", domain.HLC{}, 0, func() time.Time { return t0 })
	c.SetOffset(2 * time.Hour) // the server is two hours ahead of this phone
	got := c.Tick()
	if want := (domain.HLC{Wall: t0.Add(2 * time.Hour).UnixMilli(), Node: "phone1"}); got != want {
		t.Fatalf("Tick() with offset = %+v, want %+v", got, want)
	}
}

func TestClampFuture(t *testing.T) {
	limit := t0.Add(domain.MaxFutureSkew).UnixMilli()
	tests := []struct {
		name string
		in   domain.HLC
		want domain.HLC
	}{
		{
			name: "three days ahead is clamped",
			in:   domain.HLC{Wall: t0.Add(72 * time.Hour).UnixMilli(), Counter: 7, Node: "fastphone"},
			want: domain.HLC{Wall: limit, Counter: 7, Node: "fastphone"},
		},
		{
			name: "just past the tolerance is clamped",
			in:   domain.HLC{Wall: limit + 1, Node: "p"},
			want: domain.HLC{Wall: limit, Node: "p"},
		},
		{
			name: "at the tolerance is kept",
			in:   domain.HLC{Wall: limit, Counter: 2, Node: "p"},
			want: domain.HLC{Wall: limit, Counter: 2, Node: "p"},
		},
		{
			name: "a past reading is kept",
			in:   domain.HLC{Wall: t0.Add(-48 * time.Hour).UnixMilli(), Counter: 3, Node: "slowphone"},
			want: domain.HLC{Wall: t0.Add(-48 * time.Hour).UnixMilli(), Counter: 3, Node: "slowphone"},
		},
		{
			name: "now is kept",
			in:   domain.HLC{Wall: t0.UnixMilli(), Node: "p"},
			want: domain.HLC{Wall: t0.UnixMilli(), Node: "p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.ClampFuture(tt.in, t0); got != tt.want {
				t.Fatalf("ClampFuture(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if got, want := limit-t0.UnixMilli(), int64(5*60*1000); got != want {
		t.Fatalf("MaxFutureSkew = %d ms, want %d", got, want)
	}
}

// A clock that ran three days ahead comes back to the server's time after
// a sync (Resync), to at most the server's tolerance ahead, and its next
// readings still sort after every reading the server holds for it (each
// cut to its apply time plus the tolerance).
func TestClockResyncComesBackToServerTime(t *testing.T) {
	phone := &fakeNow{t: t0.Add(72 * time.Hour)} // three days ahead
	c := domain.NewClock("phone1", domain.HLC{}, 0, phone.now)
	var held []domain.HLC // as the server stored them
	for i := range 5 {
		phone.set(phone.now().Add(time.Second))
		h := c.Tick()
		held = append(held, domain.ClampFuture(h, t0.Add(time.Duration(i)*time.Second)))
	}
	server := t0.Add(10 * time.Second)
	c.SetOffset(server.Sub(phone.now())) // what a sync measures
	c.Resync(server)
	next := c.Tick()
	if lo, hi := server.UnixMilli(), server.Add(domain.MaxFutureSkew).UnixMilli()+1; next.Wall < lo || next.Wall > hi {
		t.Fatalf("after Resync, Tick() = %v (%v), want within [server time, +%v]", next, time.UnixMilli(next.Wall).UTC(), domain.MaxFutureSkew)
	}
	for _, h := range held {
		if next.Compare(h) <= 0 {
			t.Fatalf("after Resync, Tick() = %v sorts before the earlier reading %v the server holds", next, h)
		}
	}
	// Once real time passes the tolerance, readings follow it.
	phone.set(phone.now().Add(domain.MaxFutureSkew + time.Minute))
	if got, want := c.Tick().Wall, server.Add(domain.MaxFutureSkew+time.Minute).UnixMilli(); got != want {
		t.Fatalf("Tick() %v after the tolerance passed, want the server's time %v", got, want)
	}
	// A clock within the tolerance is left alone.
	before := c.Last()
	c.Resync(time.UnixMilli(before.Wall))
	if got := c.Last(); got != before {
		t.Fatalf("Resync moved a clock that was not ahead: %v -> %v", before, got)
	}
}
