package server

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store"
)

// testAuthCache is an auth cache on a clock the test moves.
func testAuthCache(max int) (*authCache, *time.Duration) {
	a := newAuthCache(5*time.Second, max)
	var now time.Duration
	a.now = func() time.Duration { return now }
	return a, &now
}

func TestAuthCacheTTL(t *testing.T) {
	a, now := testAuthCache(10)
	k := keyOf("token-a")
	if c, _ := a.get(k); c != nil {
		t.Fatalf("empty cache returned %+v", c)
	}
	want := &caller{deviceID: "dA", userID: "U1"}
	_, gen := a.get(k)
	a.put(k, want, gen)
	*now += 4 * time.Second
	if c, _ := a.get(k); c != want {
		t.Fatalf("within the TTL: %+v, want the remembered caller", c)
	}
	*now += time.Second
	if c, _ := a.get(k); c != nil {
		t.Fatalf("after the TTL: %+v, want a miss", c)
	}
	if hits, misses, n := a.stats(); hits != 1 || misses != 3 || n != 0 {
		t.Errorf("stats: %d hits, %d misses, %d entries; want 1, 3, 0", hits, misses, n)
	}
	if keyOf("token-b") == k {
		t.Error("two tokens share a key")
	}
	// On a miss the store is asked for the key's hex: it must be how the
	// store keeps credentials.
	if got, want := hex.EncodeToString(k[:]), store.HashSecret("token-a"); got != want {
		t.Errorf("key %s, store hash %s", got, want)
	}
}

// An invalidation between a miss and its put wins: the store read may
// have seen the device before its revocation.
func TestAuthCacheInvalidationBeatsRacingPut(t *testing.T) {
	for name, invalidate := range map[string]func(*authCache){
		"forgetDevice": func(a *authCache) { a.forgetDevice("dA") },
		"clear":        func(a *authCache) { a.clear() },
	} {
		t.Run(name, func(t *testing.T) {
			a, _ := testAuthCache(10)
			k := keyOf("token-a")
			_, gen := a.get(k)
			invalidate(a) // the revocation commits and invalidates while the store is read
			a.put(k, &caller{deviceID: "dA"}, gen)
			if c, _ := a.get(k); c != nil {
				t.Fatalf("a put that raced an invalidation was kept: %+v", c)
			}
			_, gen = a.get(k) // a later lookup is kept again
			a.put(k, &caller{deviceID: "dA"}, gen)
			if c, _ := a.get(k); c == nil {
				t.Fatal("a put after the invalidation was not kept")
			}
		})
	}
}

func TestAuthCacheForgetDevice(t *testing.T) {
	a, _ := testAuthCache(10)
	for _, d := range []string{"dA", "dB"} {
		k := keyOf("token-" + d)
		_, gen := a.get(k)
		a.put(k, &caller{deviceID: d}, gen)
	}
	a.forgetDevice("dA")
	if c, _ := a.get(keyOf("token-dA")); c != nil {
		t.Errorf("forgotten device still cached: %+v", c)
	}
	if c, _ := a.get(keyOf("token-dB")); c == nil || c.deviceID != "dB" {
		t.Errorf("another device was dropped: %+v", c)
	}
	a.clear()
	if _, _, n := a.stats(); n != 0 {
		t.Errorf("%d entries after clear", n)
	}
}

func TestAuthCacheBounded(t *testing.T) {
	a, now := testAuthCache(64)
	put := func(i int) {
		k := keyOf(fmt.Sprint("token-", i))
		_, gen := a.get(k)
		a.put(k, &caller{deviceID: fmt.Sprint("d", i)}, gen)
	}
	for i := range 1000 {
		put(i)
		if _, _, n := a.stats(); n > 64 {
			t.Fatalf("%d entries after %d puts, cap 64", n, i+1)
		}
	}
	// Expired entries go first: once they have, nothing fresh is dropped.
	*now += 10 * time.Second
	put(1000)
	if _, _, n := a.stats(); n != 1 {
		t.Fatalf("%d entries after all others expired, want 1", n)
	}
	// The latest put is always kept.
	for i := range 200 {
		put(2000 + i)
		if c, _ := a.get(keyOf(fmt.Sprint("token-", 2000+i))); c == nil {
			t.Fatalf("put %d was not kept", i)
		}
	}
}

// The nil cache (off) caches nothing and does not panic.
func TestAuthCacheNil(t *testing.T) {
	var a *authCache
	k := keyOf("t")
	_, gen := a.get(k)
	a.put(k, &caller{deviceID: "d"}, gen)
	if c, _ := a.get(k); c != nil {
		t.Fatalf("nil cache returned %+v", c)
	}
	a.forgetDevice("d")
	a.clear()
}
