package client

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"engram/internal/server"
)

// afterRun closes the idle keep-alive connections of the shared HTTP
// transport between the tests and goleak's check.
type afterRun struct{ m *testing.M }

func (a afterRun) Run() int {
	code := a.m.Run()
	http.DefaultClient.CloseIdleConnections()
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(afterRun{m},
		// fasthttp keeps one process-wide goroutine that refreshes the Date
		// header; it is started once and never stopped.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// After a listener's shutdown, its worker pool's cleaner notices the
		// stop only when its idle sleep ends.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// testServer is an in-process Engram server and a client of it.
type testServer struct {
	srv *server.Server
	c   *Client
}

// start runs a server over a temp dir until the test ends.
func start(t *testing.T) *testServer {
	t.Helper()
	return startWith(t, server.Config{})
}

func startWith(t *testing.T, cfg server.Config) *testServer {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Sync = "none"
	srv, err := server.New(cfg)
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
	c, err := New("http://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// Server bug: a Shutdown that comes before the serve loop has started
	// leaves the listener open and its goroutine running. One answered
	// request proves the loop runs.
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &testServer{srv: srv, c: c}
}

// ctxT is a context that ends with the test (or after a minute).
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkFor polls fn until it returns nil or the timeout passes.
func checkFor(t *testing.T, timeout, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}
