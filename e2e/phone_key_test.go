package e2e

import (
	"crypto/rand"
	"sync"
)

// The e2e tests run their phones encrypted at rest, each with a random key
// of its own, as an app does (testenv.Env.Device does the same for the
// phones it opens). phoneKeys holds the key of each device database the
// tests open by path.
var (
	phoneKeysMu sync.Mutex
	phoneKeys   = map[string][]byte{}
)

// phoneKey is the key of the device database at path, drawn at random the
// first time: a phone reopened at the same path (restarted, restored from
// a copy) opens with its key.
func phoneKey(path string) []byte {
	phoneKeysMu.Lock()
	defer phoneKeysMu.Unlock()
	k, ok := phoneKeys[path]
	if !ok {
		k = make([]byte, 32)
		rand.Read(k)
		phoneKeys[path] = k
	}
	return k
}

// copyKey gives dst the key of src, if src has one: a copy of a phone's
// database (a backup, a clone) opens with the key it was sealed with.
func copyKey(src, dst string) {
	phoneKeysMu.Lock()
	defer phoneKeysMu.Unlock()
	if k, ok := phoneKeys[src]; ok {
		phoneKeys[dst] = k
	}
}
