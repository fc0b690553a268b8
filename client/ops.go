package client

import (
	"context"
	"fmt"
	"net/http"
)

// Health checks that the server process is alive (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	return c.status(ctx, "/healthz", "ok")
}

// Ready checks that the server's storage is open and accepts writes (GET
// /readyz). A server that is starting, shutting down or read-only answers
// ErrUnavailable.
func (c *Client) Ready(ctx context.Context) error {
	return c.status(ctx, "/readyz", "ready")
}

func (c *Client) status(ctx context.Context, path, want string) error {
	var out struct {
		Status string `json:"status"`
	}
	if _, err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return err
	}
	if out.Status != want {
		return fmt.Errorf("client: GET %s: status %q, want %q", path, out.Status, want)
	}
	return nil
}
