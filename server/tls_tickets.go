package server

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TLS session tickets that survive a restart of syncd. A phone on a 2G
// link that resumes a session skips the certificate and its check: it
// keeps its tickets in its replica (syncer/tls_sessions.go), and syncd
// keeps the keys that seal them in <data>/tls/ticket-keys (0600), so a
// ticket syncd issued before a restart still resumes after it. Go's own
// keys live in memory only and are made anew by every process.
//
// A new key seals the tickets of each day; the keys of the days before
// stay to open the tickets they sealed until those expire (TLS 1.3
// tickets live at most 7 days, and crypto/tls refuses older ones).
const (
	ticketKeysFile   = "ticket-keys"
	ticketKeyEvery   = 24 * time.Hour
	ticketKeyKeepFor = 8 * 24 * time.Hour // a ticket's 7 days, after its key's day
	ticketKeyIDLen   = 4
	// ticketKeyRetry is how long syncd waits to try again to save a new
	// key it could not write (a full disk): meanwhile it seals with the
	// newest key it saved, so every ticket it issues survives a restart.
	ticketKeyRetry = time.Minute
)

// ticketKey is one key of the ring.
type ticketKey struct {
	created time.Time
	key     [32]byte
	aead    cipher.AEAD
	id      [ticketKeyIDLen]byte // names the key in the tickets it seals
}

func newTicketKey(created time.Time, key [32]byte) (*ticketKey, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &ticketKey{created: created, key: key, aead: aead}
	sum := sha256.Sum256(key[:])
	copy(k.id[:], sum[:])
	return k, nil
}

// ticketKeys is the ring of session-ticket keys, newest first.
type ticketKeys struct {
	path string
	now  func() time.Time

	mu       sync.Mutex
	keys     []*ticketKey
	failedAt time.Time // when saving a new key last failed
}

// loadTicketKeys reads the ring from path (making the file on first use),
// adds a key if the newest is a day old and drops the expired ones.
func loadTicketKeys(path string, now func() time.Time) (*ticketKeys, error) {
	t := &ticketKeys{path: path, now: now}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("session ticket keys: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var key [32]byte
		sec, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil && len(f) == 2 {
			var raw []byte
			raw, err = hex.DecodeString(f[1])
			if err == nil && len(raw) != len(key) {
				err = errors.New("not 32 bytes")
			}
			copy(key[:], raw)
		} else if err == nil {
			err = errors.New("want two fields")
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d: want UNIX-SECONDS and 64 hex digits of a key (%v); delete the file to start a new ring (phones then make one full handshake each)", path, line, err)
		}
		k, err := newTicketKey(time.Unix(sec, 0), key)
		if err != nil {
			return nil, err
		}
		t.keys = append(t.keys, k)
	}
	if err := t.rotate(); err != nil {
		return nil, fmt.Errorf("session ticket keys: %w", err)
	}
	return t, nil
}

// rotate adds a key when the newest is a day old (or there is none),
// drops the keys whose tickets have all expired, and saves the ring.
// t.mu is held (or t not yet shared).
func (t *ticketKeys) rotate() error {
	now := t.now()
	if len(t.keys) > 0 && now.Sub(t.keys[0].created) < ticketKeyEvery {
		return nil
	}
	var key [32]byte
	rand.Read(key[:])
	k, err := newTicketKey(now.Truncate(time.Second), key)
	if err != nil {
		return err
	}
	keys := []*ticketKey{k}
	for _, old := range t.keys {
		if now.Sub(old.created) < ticketKeyKeepFor {
			keys = append(keys, old)
		}
	}
	var buf bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&buf, "%d %x\n", k.created.Unix(), k.key)
	}
	// Written whole and synced before it replaces the ring, so that a
	// power cut leaves the old ring or the new one, never a torn file
	// (which syncd refuses at start).
	tmp := t.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return err
	}
	t.keys = keys
	return nil
}

// sealing returns the key to seal a new ticket with, rotating the ring
// when a day has passed. A key that cannot be saved is not used: a
// ticket it sealed would not open after a restart.
func (t *ticketKeys) sealing() *ticketKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.now().Sub(t.keys[0].created) >= ticketKeyEvery && t.now().Sub(t.failedAt) >= ticketKeyRetry {
		if t.rotate() != nil {
			t.failedAt = t.now()
		}
	}
	return t.keys[0]
}

func (t *ticketKeys) byID(id []byte) *ticketKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.keys {
		if bytes.Equal(k.id[:], id) {
			return k
		}
	}
	return nil
}

// install makes cfg seal and open its session tickets with the ring.
// WrapSession and UnwrapSession, unlike SetSessionTicketKeys, are
// functions: they follow the ring's rotation in every copy of cfg (gRPC
// and the HQ page each clone it).
func (t *ticketKeys) install(cfg *tls.Config) {
	cfg.WrapSession = t.wrap
	cfg.UnwrapSession = t.unwrap
}

// A ticket is the sealing key's id, a nonce, and the session state
// sealed with AES-256-GCM under that key (the id bound as associated data).
func (t *ticketKeys) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	k := t.sealing()
	out := make([]byte, ticketKeyIDLen+k.aead.NonceSize(), ticketKeyIDLen+k.aead.NonceSize()+len(state)+k.aead.Overhead())
	copy(out, k.id[:])
	rand.Read(out[ticketKeyIDLen:])
	return k.aead.Seal(out, out[ticketKeyIDLen:], state, k.id[:]), nil
}

// unwrap opens a ticket; one it cannot open (an expired key, another
// server's, damaged) means a full handshake, not an error.
func (t *ticketKeys) unwrap(ticket []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(ticket) < ticketKeyIDLen {
		return nil, nil
	}
	k := t.byID(ticket[:ticketKeyIDLen])
	if k == nil || len(ticket) < ticketKeyIDLen+k.aead.NonceSize() {
		return nil, nil
	}
	nonce := ticket[ticketKeyIDLen : ticketKeyIDLen+k.aead.NonceSize()]
	state, err := k.aead.Open(nil, nonce, ticket[ticketKeyIDLen+k.aead.NonceSize():], k.id[:])
	if err != nil {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}
