package search

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// schemaVersion changes whenever the schema or what a document holds
// changes; an index of another version is rebuilt.
const schemaVersion = 1

// The schema. docs is the FTS5 table (see the package comment); rank is
// bm25 with the tags column weighted 0, so filters never move a score.
// items maps a stream item to its row. meta holds version, checkpoint (the
// last seq the index holds), building (1 while a rebuild scans storage) and
// next_neg (the next rowid for an item whose seq a rebuild could not know).
var schema = []string{
	`CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE VIRTUAL TABLE docs USING fts5(body, tags, kind UNINDEXED, id UNINDEXED,
		ctx UNINDEXED, stream UNINDEXED, grp UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')`,
	`INSERT INTO docs(docs, rank) VALUES('rank', 'bm25(1.0, 0.0)')`,
	`CREATE TABLE items(key TEXT PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID`,
	`INSERT INTO meta(k, v) VALUES ('version', 1), ('checkpoint', 0), ('building', 0), ('next_neg', -1)`,
}

// files are the SQLite handles of one index file: a single writer
// connection and a pool of read-only connections (WAL mode lets them read
// while the writer writes).
type files struct {
	path string
	w    *sql.DB
	r    *sql.DB
	// The queries, prepared on r at the first query (database/sql then
	// prepares each once per connection and keeps it). Not at open: that
	// would open a read connection, and its memory, in a server nobody
	// searches.
	prepOnce         sync.Once
	prepErr          error
	qRel, qRec, qCnt *sql.Stmt
}

// queries returns the prepared queries, preparing them on first use.
func (f *files) queries() (rel, rec, cnt *sql.Stmt, err error) {
	f.prepOnce.Do(func() {
		for _, p := range []struct {
			s   **sql.Stmt
			sql string
		}{{&f.qRel, sqlRelevance}, {&f.qRec, sqlRecent}, {&f.qCnt, sqlCount}} {
			if *p.s, f.prepErr = f.r.Prepare(p.sql); f.prepErr != nil {
				f.prepErr = fmt.Errorf("search: prepare queries: %w", f.prepErr)
				return
			}
		}
	})
	return f.qRel, f.qRec, f.qCnt, f.prepErr
}

// state is what meta says.
type state struct {
	version    int64
	checkpoint uint64
	building   bool
	nextNeg    int64
}

// openFiles opens (creating when absent) the index at path and reads its
// meta. The index is derived: synchronous=NORMAL may lose the last
// transactions in a power cut, never consistency, and the checkpoint lost
// with them makes the indexer redo them.
func openFiles(path string, readers int) (*files, state, error) {
	var st state
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, st, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	f := &files{path: path, w: w}
	var n int
	if err := w.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'meta'`).Scan(&n); err != nil {
		f.close()
		return nil, st, err
	}
	if n == 0 {
		tx, err := w.Begin()
		if err != nil {
			f.close()
			return nil, st, err
		}
		for _, s := range schema {
			if _, err := tx.Exec(s); err != nil {
				tx.Rollback()
				f.close()
				return nil, st, fmt.Errorf("search: create schema: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			f.close()
			return nil, st, err
		}
	}
	if st, err = f.readState(); err != nil {
		f.close()
		return nil, st, err
	}
	if st.version != schemaVersion {
		f.close()
		return nil, st, fmt.Errorf("search: index schema version %d, this server writes %d", st.version, schemaVersion)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		f.close()
		return nil, st, err
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	f.r = r
	return f, st, nil
}

func (f *files) readState() (state, error) {
	var st state
	rows, err := f.w.Query(`SELECT k, v FROM meta`)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return st, err
		}
		switch k {
		case "version":
			st.version = v
		case "checkpoint":
			st.checkpoint = uint64(v)
		case "building":
			st.building = v != 0
		case "next_neg":
			st.nextNeg = v
		default:
			continue
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	if seen != 4 || st.nextNeg >= 0 {
		return st, errors.New("search: index meta is incomplete")
	}
	return st, nil
}

func (f *files) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{f.qRel, f.qRec, f.qCnt} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	if f.r != nil {
		errs = append(errs, f.r.Close())
	}
	errs = append(errs, f.w.Close())
	return errors.Join(errs...)
}

// removeFiles deletes the index file and its WAL and shared-memory files.
func removeFiles(path string) error {
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sqliteCode is the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// isCorrupt reports an error that says the file is not a sound index.
func isCorrupt(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}
