package store

import "sync"

// linkCache remembers each member's linked households, which every sync of
// a member's device reads to compute its scope (syncbench's burst profile:
// 7% of syncd's CPU for that one query). Links change only through
// Tx.Link, in the writer: a commit that changed a link clears the cache
// before its callers hear of it and before the members' devices are poked.
// A read that began before such a commit cannot store its (older) answer:
// each entry carries the cache's generation, and a store made under an
// older generation is dropped.
type linkCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string][]string
}

// linkCacheMax bounds the entries (a city has about 22,000 members).
const linkCacheMax = 200_000

func (c *linkCache) get(member string) ([]string, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hs, ok := c.m[member]
	return hs, c.gen, ok
}

// put stores a member's households read under generation gen.
func (c *linkCache) put(member string, gen uint64, hs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= linkCacheMax {
		c.m = map[string][]string{}
	}
	c.m[member] = hs
}

// clear forgets every entry.
func (c *linkCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}
