// Package search keeps a full-text index of what Engram stores (work units
// and stream items) in SQLite FTS5 and answers queries over it.
//
// The index is derived state. An indexer goroutine tails the committed log
// from its checkpoint, in large transactions that hold the rows and the new
// checkpoint together, so the index always equals the log up to its
// checkpoint: a crash loses at most work the indexer redoes. A missing,
// corrupt or outdated index file is rebuilt from storage (the log, and the
// state records for any part of the log retention has removed), while the
// server goes on serving writes.
//
// The package reads storage and never writes it, and never blocks the
// writer: it learns of commits through Notify and reads them back.
//
// Schema. One FTS5 table, docs: body (the indexed text), tags (one token
// per filter value: kind, context, agent, type, stream, group) and
// unindexed columns for the hit fields. Filters are FTS5 terms ANDed with
// the user's query, so a selective filter narrows the match itself rather
// than being checked row by row after it; measured at 300k documents, a
// common term in one of 1,000 contexts took 1.2 ms newest-first and 11 ms
// ranked this way, against 37 ms and 218 ms filtering an unindexed column
// and 14 ms and 90 ms joining a side table (docs/design.md). The rowid of a
// document is the seq of the event that wrote it, so newest-first is FTS5's
// own rowid order and never scores the matches it skips. A side table maps
// each stream item to its row, so that an update or delete replaces it.
package search
