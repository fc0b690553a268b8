// Package router delivers committed events to subscribers: it keeps the
// topic → subscriber index (exact topics in a map, "prefix/*" subscriptions
// apart), hands each event to every matching subscriber in seq order,
// replays history from storage through the per-topic index for subscribers
// that resume with an after-seq, switches them to live delivery without a gap
// or a duplicate, cuts off subscribers that cannot keep up ("lagged"), and
// applies log retention.
//
// It learns of changes only through the sequencer's publish hook, and it
// never blocks the writer: Publish appends to a queue that the router's own
// goroutine drains. It knows nothing of WebSocket or SSE: a Sink (the
// notifier's connection) takes the events.
package router
