package syncer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"sync"

	"github.com/fieldsync/fieldsync/store"
)

// metaSession is the TLS session to resume with the server (JSON of
// storedSession): kept in the replica so that a new process (a phone app
// woken by WorkManager or BGTaskScheduler) resumes instead of making a full
// handshake, which on a 2G link saves the certificate and its check. It
// holds the session's resumption secret: like every meta value it is
// sealed when the replica is encrypted.
const metaSession = "tls_session"

type storedSession struct {
	Key    string `json:"key"`    // crypto/tls's cache key: the server's name
	Ticket []byte `json:"ticket"` // as the server sealed it
	State  []byte `json:"state"`  // tls.SessionState.Bytes
}

// replicaSessions is a tls.ClientSessionCache in the replica's meta. A
// device talks to one server, so it holds one session, the latest (TLS 1.3
// servers send a new ticket on every connection). The last one is also
// kept in memory, so that a handshake reads the database only once per
// process.
type replicaSessions struct {
	db *store.Replica

	mu     sync.Mutex
	loaded bool
	cur    *storedSession
}

func (s *replicaSessions) Get(key string) (*tls.ClientSessionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		s.loaded = true
		var raw string
		if s.db.View(context.Background(), func(tx *store.RTx) error {
			var err error
			raw, err = tx.Meta(metaSession)
			return err
		}) == nil && raw != "" {
			var st storedSession
			if json.Unmarshal([]byte(raw), &st) == nil {
				s.cur = &st
			}
		}
	}
	if s.cur == nil || s.cur.Key != key {
		return nil, false
	}
	state, err := tls.ParseSessionState(s.cur.State)
	if err != nil {
		return nil, false
	}
	cs, err := tls.NewResumptionState(s.cur.Ticket, state)
	if err != nil {
		return nil, false
	}
	return cs, true
}

// Put keeps a new session, or forgets it (cs nil: crypto/tls found it
// unusable). Best effort: a session not saved only costs a full handshake
// next time, and Put runs while grpc reads the connection, which must not
// fail for it.
func (s *replicaSessions) Put(key string, cs *tls.ClientSessionState) {
	var st *storedSession
	if cs != nil {
		ticket, state, err := cs.ResumptionState()
		if err != nil || state == nil {
			return
		}
		b, err := state.Bytes()
		if err != nil {
			return
		}
		st = &storedSession{Key: key, Ticket: ticket, State: b}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == nil && (s.cur == nil || s.cur.Key != key) {
		return
	}
	s.loaded, s.cur = true, st
	val := ""
	if st != nil {
		b, err := json.Marshal(st)
		if err != nil {
			return
		}
		val = string(b)
	}
	s.db.Update(context.Background(), func(tx *store.RTx) error { return tx.SetMeta(metaSession, val) })
}
