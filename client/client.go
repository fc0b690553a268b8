package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"github.com/oklog/ulid/v2"
)

// DefaultUserAgent is the User-Agent header sent unless WithUserAgent says
// otherwise.
const DefaultUserAgent = "engram-go-client/1"

// Client talks to one Engram server. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[/prefix], without a trailing slash
	hc    *http.Client
	token string
	ua    string
	tls   *tls.Config // WithTLSConfig; applied to hc's transport in New
}

// An Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests (and its WebSocket
// handshakes) through hc. Nil means http.DefaultClient. Avoid a Timeout on
// hc for subscriptions: it bounds only their handshake here, but it would cut
// long answers short.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithTLSConfig makes the client's requests and WebSocket handshakes to an
// https server use cfg: RootCAs to trust a private CA or a self-signed
// server, Certificates for a client certificate. The client then has its
// own transport, a clone of http.DefaultTransport (or of the *http.Transport
// of WithHTTPClient's client) with cfg. Nil means the transport's own
// configuration (the system's roots).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.tls = cfg }
}

// WithToken sends "Authorization: Bearer <token>" with every request and
// WebSocket handshake. Empty means no Authorization header.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithUserAgent sets the User-Agent header. Empty means DefaultUserAgent.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.ua = ua }
}

// New returns a client of the server at baseURL: "http://host:port" or
// "https://host:port", optionally with a path prefix ("https://example.com/engram")
// when the server sits behind a proxy that strips it.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", baseURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("client: base URL %q: scheme must be http or https", baseURL)
	case u.Host == "":
		return nil, fmt.Errorf("client: base URL %q: no host", baseURL)
	case u.User != nil:
		return nil, fmt.Errorf("client: base URL %q: user info is not supported (use WithToken)", baseURL)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("client: base URL %q: query and fragment are not allowed", baseURL)
	}
	c := &Client{hc: http.DefaultClient, ua: DefaultUserAgent}
	for _, o := range opts {
		o(c)
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if c.tls != nil {
		base, ok := c.hc.Transport.(*http.Transport)
		switch {
		case c.hc.Transport == nil:
			base = http.DefaultTransport.(*http.Transport)
		case !ok:
			return nil, fmt.Errorf("client: WithTLSConfig: the HTTP client's transport is a %T, not an *http.Transport", c.hc.Transport)
		}
		tr := base.Clone()
		tr.TLSClientConfig = c.tls.Clone()
		hc := *c.hc
		hc.Transport = tr
		c.hc = &hc
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	c.base = u.String()
	return c, nil
}

// BaseURL is the base URL the client was made with, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base }

// NewID returns a fresh ULID for a work unit's ID. Sending your own ID makes
// a retried CreateUnit safe: the server answers the retry with the stored
// unit instead of writing it twice.
func NewID() string { return ulid.Make().String() }

// ListOptions pages through a list. The zero value asks for the first page
// with the server's default size (100).
type ListOptions struct {
	// Limit is the page size, 1 to 1000. Zero means the server's default.
	Limit int
	// Cursor is the NextCursor of the previous page. Empty means the first
	// page.
	Cursor string
}

func (o ListOptions) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if o.Limit != 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

// segment escapes one path segment. The names "." and ".." are valid ids;
// they are sent percent-encoded so that nothing on the way takes them for
// dot-segments.
func segment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}

// requireID rejects an empty path id before it turns into another route.
func requireID(op, field, id string) error {
	if id == "" {
		return &Error{Code: "invalid_argument", Message: fmt.Sprintf("%s: %s: required", op, field), Details: map[string]any{}}
	}
	return nil
}

// do sends one request and decodes a 2xx JSON answer into out (unless out
// is nil). It returns the status. A non-2xx answer is an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	req.Header = c.header()
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the method and the whole URL
		}
		return 0, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, readError(resp)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("client: %s %s: decode %d answer: %w", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, nil
}

// header is the headers every request and handshake carries.
func (c *Client) header() http.Header {
	h := http.Header{}
	h.Set("User-Agent", c.ua)
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// pages iterates over the items of a cursor-paged list, starting at cursor.
// fetch returns one page's items and its next cursor (nil or empty at the
// end). An error is yielded once and ends the iteration.
func pages[T any](cursor string, fetch func(cursor string) ([]T, *string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			items, next, err := fetch(cursor)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == nil || *next == "" {
				return
			}
			if *next == cursor {
				yield(zero, fmt.Errorf("client: the server answered the same cursor %q again", cursor))
				return
			}
			cursor = *next
		}
	}
}
