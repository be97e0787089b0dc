package server

import "sync"

// hub pokes Watch streams whose buckets changed. A poke carries no data;
// the device syncs. Channels hold one pending poke: pokes coalesce.
type hub struct {
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	closed chan struct{}
	once   sync.Once
}

type watcher struct {
	deviceID string
	buckets  map[string]bool
	ch       chan []string
	gone     chan struct{} // closed when the device is revoked
}

func newHub() *hub { return &hub{subs: map[*watcher]struct{}{}, closed: make(chan struct{})} }

func (h *hub) add(deviceID string, buckets []string) *watcher {
	w := &watcher{deviceID: deviceID, buckets: set(buckets), ch: make(chan []string, 1), gone: make(chan struct{})}
	h.mu.Lock()
	h.subs[w] = struct{}{}
	h.mu.Unlock()
	return w
}

func (h *hub) remove(w *watcher) {
	h.mu.Lock()
	delete(h.subs, w)
	h.mu.Unlock()
}

// rescope updates the buckets a device's watchers listen to.
func (h *hub) rescope(deviceID string, buckets []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		if w.deviceID == deviceID {
			w.buckets = set(buckets)
		}
	}
}

func (h *hub) poke(buckets []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		var hit []string
		for _, b := range buckets {
			if w.buckets[b] {
				hit = append(hit, b)
			}
		}
		if len(hit) == 0 {
			continue
		}
		select {
		case w.ch <- hit:
		default: // a poke is already waiting; it is enough
		}
	}
}

// drop ends a revoked device's watchers.
func (h *hub) drop(deviceID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		if w.deviceID == deviceID {
			delete(h.subs, w)
			close(w.gone)
		}
	}
}

func (h *hub) close() { h.once.Do(func() { close(h.closed) }) }

func set(items []string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}
