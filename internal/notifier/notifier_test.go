package notifier_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"engram/internal/engine"
	"engram/internal/server"
)

func TestMain(m *testing.M) {
	// fasthttp's worker-pool cleaner notices a stop only after its sleep
	// (up to 10 s), and its date updater lives for the process.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

func start(t *testing.T) (*server.Server, string) {
	t.Helper()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv, srv.Addr()
}

// write creates n units in context c and returns their seqs.
func write(t *testing.T, srv *server.Server, c string, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for n > 0 {
		k := min(n, 1000)
		units := make([]engine.UnitInput, k)
		for i := range units {
			units[i] = engine.UnitInput{ContextID: c, AgentID: "a", Type: "MESSAGE", Payload: json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)}
		}
		res, err := srv.Engine().CreateUnits(context.Background(), units)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.Units {
			var h struct{ Seq uint64 }
			json.Unmarshal(u, &h)
			seqs = append(seqs, h.Seq)
		}
		n -= k
	}
	return seqs
}

type frame struct {
	Op      string          `json:"op"`
	ID      string          `json:"id"`
	HeadSeq *uint64         `json:"head_seq"`
	Code    string          `json:"code"`
	LastSeq *uint64         `json:"last_seq"`
	Event   json.RawMessage `json:"event"`
}

func (f frame) seq(t *testing.T) uint64 {
	var e struct{ Seq uint64 }
	if err := json.Unmarshal(f.Event, &e); err != nil {
		t.Fatal(err)
	}
	return e.Seq
}

func dial(t *testing.T, addr string) (*websocket.Conn, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, ctx
}

func send(t *testing.T, ctx context.Context, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, ctx context.Context, c *websocket.Conn) frame {
	t.Helper()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

// TestWSLaggedThenResume: a subscriber that does not read is cut off with
// lagged after the last event it was given; resuming from last_seq yields
// the rest, so the two together are the whole topic, once, in order.
func TestWSLaggedThenResume(t *testing.T) {
	srv, addr := start(t)
	if _, err := srv.Engine().CreateContext(context.Background(), engine.ContextInput{ID: "lag"}); err != nil {
		t.Fatal(err)
	}
	c, ctx := dial(t, addr)
	send(t, ctx, c, map[string]any{"op": "subscribe", "id": "s", "topic": "contexts/lag"})
	if f := read(t, ctx, c); f.Op != "subscribed" {
		t.Fatalf("got %+v", f)
	}
	// Far more than the connection's queue and the socket buffers hold,
	// while the client reads nothing.
	want := write(t, srv, "lag", 30000)

	var got []uint64
	var last uint64
	for {
		f := read(t, ctx, c)
		if f.Op == "event" {
			got = append(got, f.seq(t))
			continue
		}
		if f.Op != "error" || f.Code != "lagged" || f.LastSeq == nil {
			t.Fatalf("got %+v", f)
		}
		last = *f.LastSeq
		break
	}
	if len(got) == 0 || got[len(got)-1] != last {
		t.Fatalf("lagged last_seq %d, but the last event delivered was %v", last, got[max(0, len(got)-1):])
	}
	if len(got) == len(want) {
		t.Fatal("never lagged: the test did not exercise the cut-off")
	}
	// The connection stays; resume on it.
	send(t, ctx, c, map[string]any{"op": "subscribe", "id": "s", "topic": "contexts/lag", "after_seq": last})
	for len(got) < len(want) {
		f := read(t, ctx, c)
		switch f.Op {
		case "subscribed":
		case "event":
			got = append(got, f.seq(t))
		default:
			t.Fatalf("got %+v after %d events", f, len(got))
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d: seq %d, want %d", i, got[i], want[i])
		}
	}
}

// TestSSEResumeWithLastEventID reads part of a stream, reconnects with
// Last-Event-ID, and gets the rest exactly once.
func TestSSEResumeWithLastEventID(t *testing.T) {
	srv, addr := start(t)
	want := write(t, srv, "sse", 50)
	readIDs := func(header string, n int) []uint64 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/events?topic=contexts/sse", nil)
		req.Header.Set("Last-Event-ID", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.StatusCode != 200 {
			t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
		}
		var ids []uint64
		sc := bufio.NewScanner(resp.Body)
		for len(ids) < n && sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				id, _ := strconv.ParseUint(v, 10, 64)
				ids = append(ids, id)
			}
		}
		return ids
	}
	first := readIDs("0", 21) // the context.created event, then 20 units
	if first[0] != 1 || first[20] != want[19] {
		t.Fatalf("first part %v", first)
	}
	rest := readIDs(strconv.FormatUint(first[20], 10), 30)
	if fmt.Sprint(rest) != fmt.Sprint(want[20:]) {
		t.Fatalf("resumed with %v, want %v", rest, want[20:])
	}
}

// TestShutdownEndsStreams: open WebSocket and SSE streams do not hold a
// shutdown open, and their clients are told.
func TestShutdownEndsStreams(t *testing.T) {
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Sync: "none"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	addr := srv.Addr()
	c, ctx := dial(t, addr)
	send(t, ctx, c, map[string]any{"op": "subscribe", "id": "s", "topic": "contexts/*"})
	read(t, ctx, c)
	resp, err := http.Get("http://" + addr + "/v1/events?topic=locks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	bufio.NewReader(resp.Body).ReadString('\n') // ": ok"

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("shutdown took %v with streams open", d)
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("websocket still open after shutdown")
	}
}
