package api

// The limit label values of engram_http_limit_hits_total: a request or a
// connection that a configured limit cut short. The server counts the
// timeouts at the connection; the API counts the rest as it answers them.
const (
	LimitBodyTooLarge   = "body_too_large"   // 413: body over --max-body
	LimitHeaderTooLarge = "header_too_large" // 431: request line and headers over the read buffer
	LimitJSONTooDeep    = "json_too_deep"    // 400: body nested deeper than jsonx.MaxDepth
	LimitReadTimeout    = "read_timeout"     // a request (or a new connection's first) not read within --read-timeout
	LimitWriteTimeout   = "write_timeout"    // a response not written within its deadline
	LimitIdleTimeout    = "idle_timeout"     // a keep-alive connection idle for --idle-timeout
	LimitRateLimited    = "rate_limited"     // 429: a client over --rate-limit
)

// Limits lists every limit label value, so that their series exist (at 0)
// before the first hit.
var Limits = []string{LimitBodyTooLarge, LimitHeaderTooLarge, LimitJSONTooDeep, LimitReadTimeout, LimitWriteTimeout, LimitIdleTimeout, LimitRateLimited}
