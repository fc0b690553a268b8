package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"engram/client"
	"engram/internal/search"
	"engram/internal/storage"
)

// runSearch runs a full-text search and prints the hits: engram search
// [flags] QUERY...
func runSearch(args []string, stdout, stderr io.Writer) error {
	f := newCommandFlags("engram search", "QUERY...",
		"Searches the text of work units (string payloads, string leaves of JSON payloads,\n"+
			"metadata values) and stream items (their values) and prints the hits, best first (or\n"+
			"newest first with --sort recent). QUERY is FTS5 syntax, its words joined with spaces:\n"+
			"terms (all must match), \"phrases\", prefix*, AND, OR, NOT and parentheses; quote text\n"+
			"with punctuation, and put -- before a QUERY that starts with -. Example:\n\n"+
			"  engram search --context ops '\"disk full\"' OR 'deploy*'\n\n"+
			"Each hit is printed as a line with its seq, kind, id, context (work units) or\n"+
			"stream/group (stream items) and score (none with --sort recent), then its snippet\n"+
			"with the matched words in **...**; a last line says how many hits there are and up\n"+
			"to which seq the index was complete. --json prints the server's answer as JSON\n"+
			"instead (the snippet with <mark>). A bad query is an error naming the parameter\n"+
			"(exit status 1).", stderr)
	kind := f.String("kind", "", "only this kind: workunit or stream_item")
	contextID := f.String("context", "", "only work units of this context")
	agent := f.String("agent", "", "only work units of this agent")
	typ := f.String("type", "", "only work units of this type (MESSAGE, PLAN, ...)")
	stream := f.String("stream", "", "only items of this stream")
	sortBy := f.String("sort", "relevance", "relevance (best first) or recent (newest first; cheap for common terms)")
	limit := f.Int("limit", 0, "at most this many hits, 1 to 1000 (0: the server's default, 20)")
	offset := f.Int("offset", 0, "skip this many hits first, 0 to 10000")
	count := f.Bool("count", false, "also print the number of all matches (a scan of every match)")
	minSeq := f.Uint64("min-seq", 0, "wait (up to 5 s) until the index holds this seq, e.g. the seq of your write")
	asJSON := f.Bool("json", false, "print the answer as JSON")
	pos, err := f.parse(args, 0, math.MaxInt)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return f.usageError("want a QUERY")
	case *kind != "" && *kind != string(client.KindWorkUnit) && *kind != string(client.KindStreamItem):
		return f.usageError("--kind must be workunit or stream_item")
	case *sortBy != string(client.SortRelevance) && *sortBy != string(client.SortRecent):
		return f.usageError("--sort must be relevance or recent")
	case *limit < 0 || *limit > search.MaxLimit:
		return f.usageError("--limit must be 0 to %d", search.MaxLimit)
	case *offset < 0 || *offset > search.MaxOffset:
		return f.usageError("--offset must be 0 to %d", search.MaxOffset)
	}
	q := client.SearchQuery{
		Q: strings.Join(pos, " "), Kind: client.SearchKind(*kind), ContextID: *contextID, AgentID: *agent,
		Type: client.UnitType(*typ), Stream: *stream, Limit: *limit, Offset: *offset, Count: *count, MinSeq: *minSeq,
	}
	if *sortBy != string(client.SortRelevance) {
		q.Sort = client.SearchSort(*sortBy)
	}
	c, ctx, stop, err := f.client()
	if err != nil {
		return err
	}
	defer stop()
	res, err := c.Search(ctx, q)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // <mark> as it is
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printHits(w, res, *offset, q.Sort == client.SortRecent)
	}
	return w.Flush()
}

// printHits writes the hits readably, two lines each, then a summary. The
// hits of sort=recent have no score.
func printHits(w io.Writer, res *client.SearchResult, offset int, recent bool) {
	for _, h := range res.Hits {
		where := "context " + h.ContextID
		if h.Kind == client.KindStreamItem {
			where = "stream " + h.Stream + "/" + h.Group
		}
		score := ""
		if !recent {
			score = fmt.Sprintf("  score %.3g", h.Score)
		}
		fmt.Fprintf(w, "seq %d  %s %s  %s%s\n", h.Seq, h.Kind, h.ID, where, score)
		fmt.Fprintf(w, "    %s\n", readableSnippet(h.Snippet))
	}
	n := len(res.Hits)
	var b strings.Builder
	switch {
	case n == 0:
		b.WriteString("no hits")
	case n == 1 && offset == 0:
		b.WriteString("1 hit")
	case offset == 0:
		fmt.Fprintf(&b, "%d hits", n)
	default:
		fmt.Fprintf(&b, "hits %d to %d", offset+1, offset+n)
	}
	if res.Total != nil {
		fmt.Fprintf(&b, " of %d", *res.Total)
	}
	fmt.Fprintf(&b, " (index complete up to seq %d)\n", res.IndexedSeq)
	io.WriteString(w, b.String())
}

// snippetReplacer shows a snippet on one line: the matched words between
// ** and **, the text's parts (joined by newlines) separated by " / ".
var snippetReplacer = strings.NewReplacer(search.MarkOpen, "**", search.MarkClose, "**", "\r\n", " / ", "\n", " / ", "\r", " / ", "\t", " ")

func readableSnippet(s string) string { return snippetReplacer.Replace(s) }

// reindexPoll is how often engram reindex reads the rebuild's status.
var reindexPoll = 500 * time.Millisecond

// runReindex rebuilds the search index from storage, through a server or
// offline, and follows the rebuild until it is done: engram reindex
// [--server URL | --data DIR].
func runReindex(args []string, stdout, stderr io.Writer) error {
	f := newCommandFlags("engram reindex", "",
		"Rebuilds the search index from storage and prints its progress until the index has\n"+
			"caught up with the log. With --server (the default) the server rebuilds it while it\n"+
			"goes on serving (searches meanwhile answer from what is rebuilt so far); Ctrl-C stops\n"+
			"following, not the rebuild. With --data DIR, for a stopped server, it opens the data\n"+
			"directory itself and rebuilds DIR/search/index.db before it exits.", stderr)
	data := f.String("data", "", "rebuild offline in this data directory (the server must be stopped)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	serverSet := false
	f.Visit(func(fl *flag.Flag) {
		serverSet = serverSet || fl.Name == "server" || fl.Name == "token" || fl.Name == "ca"
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *data != "" {
		if serverSet {
			return f.usageError("--data rebuilds offline: it takes no --server or --token (nor --ca)")
		}
		return reindexOffline(ctx, *data, stdout, stderr)
	}
	c, err := newClient(*f.server, *f.token, *f.ca)
	if err != nil {
		return err
	}
	return reindexOnline(ctx, c, stdout)
}

func reindexOnline(ctx context.Context, c *client.Client, stdout io.Writer) error {
	start := time.Now()
	st, err := c.Reindex(ctx)
	if err != nil {
		return err
	}
	head := st.HeadSeq
	fmt.Fprintf(stdout, "rebuild requested: head_seq %d\n", head)
	p := progress{w: stdout}
	for !st.Done(head) {
		p.print(st.Phase, st.Scanned, st.IndexedSeq, st.HeadSeq)
		if !sleepCtx(ctx, reindexPoll) {
			fmt.Fprintln(stdout, "interrupted: the server goes on rebuilding (engram reindex follows it again)")
			return nil
		}
		if st, err = c.ReindexStatus(ctx); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stdout, "interrupted: the server goes on rebuilding (engram reindex follows it again)")
				return nil
			}
			return err
		}
	}
	fmt.Fprintf(stdout, "done: indexed_seq %d, head_seq %d (%v)\n", st.IndexedSeq, st.HeadSeq, time.Since(start).Round(time.Millisecond))
	return nil
}

func reindexOffline(ctx context.Context, dir string, stdout, stderr io.Writer) error {
	entries, err := os.ReadDir(dir)
	switch {
	case err != nil:
		return err
	case len(entries) == 0: // storage.Open would make a new store of it
		return fmt.Errorf("%s holds no Engram data", dir)
	}
	start := time.Now()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := rebuildOffline(ctx, dir, stdout, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "done: indexed_seq %d, head_seq %d (%v)\n", st.IndexedSeq, st.HeadSeq, time.Since(start).Round(time.Millisecond))
	return nil
}

// rebuildOffline opens the store in dir and its search index, rebuilds the
// index and waits until it holds the whole log, printing the progress;
// then closes both.
func rebuildOffline(ctx context.Context, dir string, stdout io.Writer, log *slog.Logger) (st search.Status, err error) {
	db, err := storage.Open(storage.Config{Dir: dir}, log)
	if errors.Is(err, storage.ErrLocked) {
		return st, fmt.Errorf("%w: is a server running on %s?", err, dir)
	}
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	idx, err := search.Open(search.Config{Dir: filepath.Join(dir, "search"), Store: db, Head: db.HeadSeq}, log)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := idx.Close(); err == nil {
			err = cerr
		}
	}()
	st = idx.Reindex("engram reindex --data")
	fmt.Fprintf(stdout, "rebuilding %s: head_seq %d\n", filepath.Join(dir, "search", "index.db"), st.HeadSeq)
	idx.Start()
	p := progress{w: stdout}
	for {
		st = idx.Status()
		if !st.Rebuilding && st.IndexedSeq == st.HeadSeq {
			return st, nil
		}
		p.print(st.Phase, st.Scanned, st.IndexedSeq, st.HeadSeq)
		if !sleepCtx(ctx, reindexPoll) {
			return st, errors.New("interrupted: the index is not complete; the server rebuilds it when it starts (or run engram reindex again)")
		}
	}
}

// progress prints a rebuild's status lines, each only when it changed.
type progress struct {
	w    io.Writer
	last string
}

func (p *progress) print(phase string, scanned int64, indexed, head uint64) {
	var b bytes.Buffer
	b.WriteString("rebuilding:")
	if phase != "" {
		b.WriteString(" phase " + phase + ",")
	}
	if scanned > 0 {
		b.WriteString(" " + strconv.FormatInt(scanned, 10) + " records scanned,")
	}
	fmt.Fprintf(&b, " indexed_seq %d/%d\n", indexed, head)
	if line := b.String(); line != p.last {
		p.last = line
		io.WriteString(p.w, line)
	}
}

// sleepCtx waits d; false means ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
