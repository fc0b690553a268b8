// Package client is the Go client of Engram's v1 HTTP API: typed methods for
// the REST endpoints (contexts, work units, stream items, queues, locks,
// cron jobs, search, health) and a self-healing WebSocket subscription to
// the event log.
//
// A [Client] is safe for concurrent use. Every method takes a
// [context.Context] that bounds the request. A non-2xx answer is returned as
// an [*Error] carrying the status, the stable code, the message and the
// details of the server's error body; match it with errors.Is against the
// sentinels ([ErrNotFound], [ErrConflict], [ErrInvalidArgument], ...), never
// on the message. Transport failures are returned wrapped with the method and
// path of the request, so errors.Is(err, context.DeadlineExceeded) works.
//
// Lists come in two forms: one page at a time ([Client.ListContexts],
// [Client.ListUnits], [Client.Related], [Client.ListItems],
// [Client.ListDead], [Client.ListQueues], [Client.ListLocks],
// [Client.ListCron]), with the page's NextCursor to pass back, and as
// iterators that follow the cursors for you ([Client.AllContexts],
// [Client.AllUnits], [Client.AllRelated], [Client.AllItems],
// [Client.AllDead], [Client.AllQueues], [Client.AllLocks],
// [Client.AllCron]).
//
// Queues deliver messages at least once: [Client.Publish] (idempotent with a
// dedupe id), [Client.Lease] (long-polling up to 30 s), then [Client.Ack] or
// [Client.Nack] by receipt; messages out of attempts wait in the dead-letter
// list ([Client.ListDead], [Client.Redrive]). [Client.Work] runs that loop
// around a handler until its context ends.
//
// Locks are TTL locks over one or more resources, all or none:
// [Client.Acquire] (optionally waiting in line up to 60 s; a held resource
// is [ErrConflict], and [LockHeld] tells who holds it), [Client.Renew]
// before the TTL ends, [Client.Release]; a lock that expired or was released
// is [ErrGone]. Each acquisition carries a fencing token that only grows.
// [Client.GetLock] finds the lock of a resource, [Client.ListLocks] the
// locks by resource prefix.
//
// Cron jobs publish a message on a queue at each time of a cron expression
// (five, six or seven fields, in a time zone): [Client.PutCron] creates or
// replaces one, [Client.GetCron] shows its last and next fire times,
// [Client.DeleteCron] stops it. Each scheduled time fires at most once; a
// fire's message decodes into a [CronMessage]. Times missed while the server
// was stopped are skipped, or fired once ([CronCatchUpOnce]).
//
// [Client.Search] finds work units and stream items by their text (SQLite
// FTS5 syntax: terms, "phrases", prefix*, AND, OR, NOT), ranked or newest
// first, with filters and snippets. The index follows the log in the
// background: set [SearchQuery].MinSeq to the seq of a write to see it
// (read your writes; a wait that runs out is [ErrUnavailable], see
// [SearchLagging]). [Client.Reindex] rebuilds the index from storage and
// [Client.ReindexStatus] follows the rebuild.
//
// [Client.Subscribe] follows one topic of the event log ("contexts/c1", or a
// prefix "contexts/*") over /v1/ws. The [Subscription] reconnects by itself,
// with exponential backoff and jitter, when the connection drops, when the
// server cuts it off as too slow (lagged) or when the server shuts down; it
// resumes after the last event it handed over and drops repeats, so the
// caller sees every event of the topic once, in seq order. It ends only on
// Close, on the end of its context, or on an error that retrying cannot fix
// (history removed by retention: [ErrHistoryTruncated]; bad topic;
// credentials refused).
//
// The package owns nothing but the wire: it keeps no state between calls
// other than its HTTP client, and it never retries a REST call on its own (a
// write retried blindly could be applied twice; give work units your own id
// from [NewID] and retry with the same id to make retries safe).
package client
