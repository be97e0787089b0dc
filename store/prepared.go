package store

import (
	"context"
	"database/sql"
	"sync"
)

// Prepared statements. modernc's SQLite parses a statement's SQL on every
// call that is not prepared; syncbench's profile put that at a quarter of
// syncd's CPU. Reads prepare each query once per pool (database/sql then
// prepares it on each connection as needed). The writer cannot prepare
// while its one connection is inside a transaction, so it notes the
// queries it ran unprepared and prepares them between transactions.

// readStmts is a reader pool with a statement cache; it satisfies queryer.
type readStmts struct {
	db    *sql.DB
	cache sync.Map // query -> *sql.Stmt
}

func (r *readStmts) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := r.cache.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := r.cache.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// QueryContext runs a prepared query.
func (r *readStmts) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a prepared query for one row. A failed prepare
// shows as the row's error.
func (r *readStmts) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return r.db.QueryRowContext(ctx, query, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

// writeStmts is the writer's statement cache; only the writer goroutine
// uses it.
type writeStmts struct {
	db      *sql.DB
	stmts   map[string]*sql.Stmt
	pending map[string]bool // ran unprepared in the last transaction
}

// prepare prepares the queries noted during the last transaction; called
// with no transaction open.
func (w *writeStmts) prepare(ctx context.Context) {
	for q := range w.pending {
		if st, err := w.db.PrepareContext(ctx, q); err == nil {
			w.stmts[q] = st
		}
		delete(w.pending, q)
	}
}

// txq lets the writer's transaction serve as a queryer, prepared like Exec.
type txq struct{ t *Tx }

func (q txq) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	return q.t.QueryRow(query, args...)
}

func (q txq) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	t := q.t
	if st := t.stmts.stmts[query]; st != nil {
		return t.stmt(query, st).QueryContext(t.ctx, args...)
	}
	t.stmts.pending[query] = true
	return t.tx.QueryContext(t.ctx, query, args...)
}
