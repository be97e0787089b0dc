package server

import (
	"crypto/sha256"
	"sync"
	"time"
)

// How long and how many device credentials the auth cache remembers.
const (
	// authCacheTTL bounds how stale a remembered caller can be when the
	// database is changed behind syncd's back (another process writing
	// the SQLite file). Every change made through syncd's own RPCs
	// invalidates the cache at once (RevokeDevice forgets the device,
	// ImportOrg and AssignHousehold clear it); fieldctl's admin commands
	// go through those RPCs.
	authCacheTTL = 5 * time.Second
	// authCacheMax caps the entries (a few hundred bytes each). Only
	// credentials that authenticated are kept, so guessing tokens cannot
	// fill it.
	authCacheMax = 8192
)

// tokenKey is the key of a device credential: its SHA-256, whose hex is
// store.HashSecret(token). The raw token is never kept.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

type authEntry struct {
	c       *caller // shared by every call it serves: never modified
	expires time.Duration
}

// authCache remembers, for authCacheTTL, the caller a device credential
// authenticated as, so that a device's repeated calls (pull pages, Watch
// next to Sync) skip the two store reads of (*Server).device. Only
// successful lookups are kept: an unknown, revoked or orphaned credential
// is looked up in the store every time.
//
// A nil *authCache caches nothing.
type authCache struct {
	mu sync.Mutex
	m  map[tokenKey]authEntry
	// gen counts invalidations. A lookup that missed notes it before
	// reading the store and keeps its result only if no invalidation ran
	// meanwhile: a read racing a revocation cannot put the device back.
	gen          uint64
	ttl          time.Duration
	max          int
	now          func() time.Duration // monotonic; tests move it
	hits, misses uint64
}

func newAuthCache(ttl time.Duration, max int) *authCache {
	start := time.Now()
	return &authCache{m: make(map[tokenKey]authEntry), ttl: ttl, max: max,
		now: func() time.Duration { return time.Since(start) }}
}

// get returns the remembered caller of a credential, or nil and the
// generation to hand to put once the store has been read.
func (a *authCache) get(k tokenKey) (*caller, uint64) {
	if a == nil {
		return nil, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.m[k]; ok {
		if a.now() < e.expires {
			a.hits++
			return e.c, 0
		}
		delete(a.m, k)
	}
	a.misses++
	return nil, a.gen
}

// put remembers a caller read from the store, unless the cache was
// invalidated since get returned gen.
func (a *authCache) put(k tokenKey, c *caller, gen uint64) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	now := a.now()
	if _, ok := a.m[k]; !ok && len(a.m) >= a.max {
		a.evict(now)
	}
	a.m[k] = authEntry{c: c, expires: now + a.ttl}
}

// evict makes room: expired entries first; if every entry is still fresh
// (more devices than max within one TTL), an eighth of them, in the map's
// randomized iteration order.
func (a *authCache) evict(now time.Duration) {
	for k, e := range a.m {
		if e.expires <= now {
			delete(a.m, k)
		}
	}
	for k := range a.m {
		if len(a.m) < a.max-a.max/8 {
			break
		}
		delete(a.m, k)
	}
}

// forgetDevice drops a device's credentials; call it after a commit that
// changes the device (revocation), before answering.
func (a *authCache) forgetDevice(deviceID string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	for k, e := range a.m {
		if e.c.deviceID == deviceID {
			delete(a.m, k)
		}
	}
}

// clear drops everything; call it after a commit that may change users,
// roles, units or links, before answering.
func (a *authCache) clear() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	clear(a.m)
}

// stats returns the hits, the misses and the entries held.
func (a *authCache) stats() (hits, misses uint64, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits, a.misses, len(a.m)
}
