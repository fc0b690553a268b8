package api

import (
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/cpu"
	"golang.org/x/time/rate"
)

// The rate limit (Config.RateLimit): a token bucket per key, refilled at
// RateLimit tokens a second up to RateBurst; a request takes one token, and a
// request that finds none is answered 429 rate_limited with Retry-After. The
// key is Config.RateKey's (the authenticated principal, once auth exists),
// else the client's IP address.
//
// What is limited is HTTP requests: a WebSocket (/v1/ws, /stream) or SSE
// (/v1/events) connection counts once, by its opening request; the frames
// and events on it are not limited here. /healthz, /readyz and /metrics are
// never limited, so probes and scrapes go on whatever a client does.
//
// Buckets live in a sharded map. A bucket untouched for its fill time
// (RateBurst/RateLimit) is full again, and a full bucket behaves exactly like
// a new one, so such buckets are forgotten: when a new key comes to a shard
// not swept for the fill time (clamped to 1 s..1 min), the shard sweeps them.
// The map is also capped (rateMaxKeys): a new key in a full shard evicts the
// least recently used of a few sampled buckets, which forgets a bucket early
// only when more than rateMaxKeys keys were busy within one fill time.

const (
	rateShards  = 64
	rateMaxKeys = 100_000 // buckets kept at most, over all shards
	rateSample  = 8       // buckets sampled to pick one to evict from a full shard
)

// rateLimiter holds the buckets. Each shard's mutex guards its map and its
// buckets' use times, and is held around the bucket's own (rate.Limiter's)
// mutex: that is the only lock order.
type rateLimiter struct {
	limit    rate.Limit
	burst    int
	fill     time.Duration // an idle bucket is full after this
	sweep    time.Duration // a shard sweeps at most this often
	perShard int
	now      func() time.Time
	seed     maphash.Seed
	shards   [rateShards]rateShard
}

type rateShard struct {
	_         cpu.CacheLinePad // no false sharing between shards
	mu        sync.Mutex
	buckets   map[string]*rateBucket
	lastSweep time.Time
}

type rateBucket struct {
	lim  *rate.Limiter
	used time.Time // the last request that asked this bucket
}

// defaultRateBurst is the burst when Config.RateBurst is 0: two seconds'
// worth of requests, at least one.
func defaultRateBurst(perSecond float64) int {
	return int(max(1, math.Ceil(2*perSecond)))
}

// newRateLimiter limits each key to perSecond requests a second with bursts
// of burst (> 0), keeping at most maxKeys buckets. now is the clock (nil:
// time.Now).
func newRateLimiter(perSecond float64, burst, maxKeys int, now func() time.Time) *rateLimiter {
	if now == nil {
		now = time.Now
	}
	fill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	l := &rateLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		fill:     fill,
		sweep:    min(max(fill, time.Second), time.Minute),
		perShard: max(1, maxKeys/rateShards),
		now:      now,
		seed:     maphash.MakeSeed(),
	}
	t := now()
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*rateBucket)
		l.shards[i].lastSweep = t
	}
	return l
}

// allow takes a token from key's bucket. When there is none it returns false
// and how long until there will be one; it takes nothing then, so a client
// that waits that long is served.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%rateShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		b = s.add(l, key, now)
	}
	return l.take(b, now)
}

// allowBytes is allow for a key in bytes, which it copies only to make a
// new bucket: the remote IP address needs no string on the hot path.
func (l *rateLimiter) allowBytes(key []byte) (bool, time.Duration) {
	now := l.now()
	s := &l.shards[maphash.Bytes(l.seed, key)%rateShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[string(key)] // no copy: a map lookup
	if b == nil {
		b = s.add(l, string(key), now)
	}
	return l.take(b, now)
}

// take takes a token from b at now; the shard's mutex is held.
func (l *rateLimiter) take(b *rateBucket, now time.Time) (bool, time.Duration) {
	b.used = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	// Short of a whole token: the wait is what the rest takes to refill
	// (what a reservation would be told to wait, without reserving).
	missing := 1 - b.lim.TokensAt(now)
	return false, time.Duration(math.Ceil(missing / float64(l.limit) * float64(time.Second)))
}

// add makes key's bucket, first sweeping out full buckets if the shard has
// not been swept for a while, and evicting one if the shard is still full.
// The shard's mutex is held.
func (s *rateShard) add(l *rateLimiter, key string, now time.Time) *rateBucket {
	if now.Sub(s.lastSweep) >= l.sweep {
		s.lastSweep = now
		for k, b := range s.buckets {
			if now.Sub(b.used) >= l.fill {
				delete(s.buckets, k)
			}
		}
	}
	if len(s.buckets) >= l.perShard {
		var oldest string
		var at time.Time
		n := 0
		for k, b := range s.buckets { // map order is random: a sample
			if n == 0 || b.used.Before(at) {
				oldest, at = k, b.used
			}
			if n++; n == rateSample {
				break
			}
		}
		delete(s.buckets, oldest)
	}
	b := &rateBucket{lim: rate.NewLimiter(l.limit, l.burst)}
	// The key may alias a request buffer (Fiber's zero-copy strings) or be
	// a byte slice's transient string: the map keeps its own copy.
	s.buckets[strings.Clone(key)] = b
	return b
}

// size is the number of buckets kept.
func (l *rateLimiter) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// rateLimited is the error of a request over the rate limit (429).
type rateLimited struct {
	perSecond float64
	burst     int
	wait      time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("rate limit: over %s requests/s (burst %d) for this client; retry in %s",
		strconv.FormatFloat(e.perSecond, 'f', -1, 64), e.burst, e.wait.Round(time.Millisecond))
}

// retryAfter is the Retry-After value for a wait: whole seconds, rounded up,
// at least 1.
func retryAfter(wait time.Duration) int64 {
	return max(1, int64((wait+time.Second-1)/time.Second))
}

// rateExempt reports whether path is one of the endpoints never limited. It
// matches as the router does (case-insensitive, optional trailing slash), so
// every spelling that reaches those handlers is exempt and no other path is.
func rateExempt(path string) bool {
	path = strings.TrimSuffix(path, "/")
	switch len(path) {
	case len("/healthz"): // == len("/metrics")
		return strings.EqualFold(path, "/healthz") || strings.EqualFold(path, "/metrics")
	case len("/readyz"):
		return strings.EqualFold(path, "/readyz")
	}
	return false
}

// rateLimit is the middleware enforcing l, keyed by key (nil or an empty
// result: the remote IP).
func rateLimit(l *rateLimiter, key func(*fiber.Ctx) string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if rateExempt(c.Path()) {
			return c.Next()
		}
		k := ""
		if key != nil {
			k = key(c)
		}
		var ok bool
		var wait time.Duration
		if k != "" {
			ok, wait = l.allow(k)
		} else {
			// The address the connection comes from (no forwarding header
			// is trusted), as its 16 bytes: binary, so it cannot collide
			// with a principal's name.
			ok, wait = l.allowBytes(c.Context().RemoteIP().To16())
		}
		if !ok {
			c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(retryAfter(wait), 10))
			return &rateLimited{perSecond: float64(l.limit), burst: l.burst, wait: wait}
		}
		return c.Next()
	}
}
