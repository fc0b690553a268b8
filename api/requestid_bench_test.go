package api_test

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"

	"engram/internal/server"
)

// BenchmarkMiddleware measures the middleware every request passes through
// (request id, recoverer, metrics) around the cheapest route, without a
// network: app.Handler on a reused RequestCtx.
func BenchmarkMiddleware(b *testing.B) {
	for _, tc := range []struct{ name, header string }{
		{"generated id", ""},
		{"client id", "client-req-1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := server.New(server.Config{DataDir: b.TempDir(), Sync: "none"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { srv.Shutdown(context.Background()) })
			h := srv.App().Handler()
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod("GET")
				ctx.Request.SetRequestURI("/healthz")
				if tc.header != "" {
					ctx.Request.Header.Set("X-Request-Id", tc.header)
				}
				h(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatal(ctx.Response.StatusCode())
				}
			}
		})
	}
}
