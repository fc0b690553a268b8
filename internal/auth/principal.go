package auth

import (
	"fmt"
	"strings"
)

// Scope is what a credential may do: read (GETs, search, subscriptions),
// write (changes, queue lease/ack, locks) or admin (/v1/admin/*, and the
// other two).
type Scope string

const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
	ScopeAdmin Scope = "admin"
)

type scopeSet uint8

const (
	bitRead scopeSet = 1 << iota
	bitWrite
	bitAdmin
)

func scopeBit(s string) (scopeSet, bool) {
	switch Scope(s) {
	case ScopeRead:
		return bitRead, true
	case ScopeWrite:
		return bitWrite, true
	case ScopeAdmin:
		return bitAdmin, true
	}
	return 0, false
}

// Principal is an authenticated caller: an API key or a verified JWT. It
// is immutable (a key's Principal is shared by all its requests). A nil
// *Principal allows nothing: a request that lost its principal is refused,
// never let through. With auth off, the server uses Open().
type Principal struct {
	name     string
	kind     string
	scopes   scopeSet
	prefixes compiledPrefixes
}

// Open is the principal of every request when auth is not configured: all
// scopes, no prefixes.
func Open() *Principal {
	return &Principal{name: "anonymous", kind: "open", scopes: bitRead | bitWrite | bitAdmin,
		prefixes: compiledPrefixes{patterns{all: true}, patterns{all: true}, patterns{all: true}, patterns{all: true}}}
}

// Name names the principal in logs, metrics and audit lines: the key's
// configured name, the JWT's sub (when it is a name), "jwt" otherwise, or
// "anonymous" for Open. Never a secret.
func (p *Principal) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// Kind is "key", "jwt" or "open".
func (p *Principal) Kind() string {
	if p == nil {
		return ""
	}
	return p.kind
}

// Can reports whether the principal has scope s; admin implies read and
// write.
func (p *Principal) Can(s Scope) bool {
	if p == nil {
		return false
	}
	if p.scopes&bitAdmin != 0 {
		return true
	}
	b, ok := scopeBit(string(s))
	return ok && p.scopes&b != 0
}

// Require is Can as an error: nil, or a 403 naming the missing scope.
func (p *Principal) Require(s Scope) error {
	if p.Can(s) {
		return nil
	}
	return &Error{Decision: PermissionDenied, Reason: "scope",
		Message: fmt.Sprintf("the credential lacks the %q scope", string(s))}
}

// Unrestricted reports whether the principal has no prefixes of any kind.
func (p *Principal) Unrestricted() bool {
	return p != nil && p.prefixes.unrestricted()
}

// AllowContext reports whether the context id is within the principal's
// context prefixes (scopes are not checked).
func (p *Principal) AllowContext(id string) bool {
	return p != nil && p.prefixes.contexts.match(id)
}

// AllowStream reports whether "{stream}/{group}" is within the principal's
// stream prefixes.
func (p *Principal) AllowStream(stream, group string) bool {
	return p != nil && p.prefixes.streams.match(stream+"/"+group)
}

// AllowQueue reports whether the queue topic is within the principal's
// queue prefixes.
func (p *Principal) AllowQueue(topic string) bool {
	return p != nil && p.prefixes.queues.match(topic)
}

// AllowLock reports whether the lock resource is within the principal's
// lock prefixes.
func (p *Principal) AllowLock(resource string) bool {
	return p != nil && p.prefixes.locks.match(resource)
}

// AllowTopic reports whether the principal may subscribe to an event topic
// (exact, or a prefix subscription ending in "*", as router.Matches reads
// it). It checks the read scope and then:
//
//   - contexts/{id}: AllowContext; queues/{topic}: AllowQueue;
//     streams/{s}/{g}: AllowStream.
//   - locks, locks/.., cron/..: admin, or an Unrestricted principal (lock
//     and cron events name resources and queues of every prefix).
//   - A prefix subscription (contexts/*, contexts/team-a-*,
//     streams/presence/*, queues/*) is allowed only when every topic it
//     could ever match is allowed: its kind is unrestricted, or one of the
//     kind's prefix patterns covers it (contexts/team-a-x* under
//     "team-a-*"; streams/presence/* under "presence/*" or "pres*"). Exact
//     patterns never cover a prefix subscription. Events are not filtered
//     one by one after subscribing: a subscription delivers every event of
//     its topics or is refused, so nothing is dropped silently and resuming
//     by seq stays exact.
//   - Anything else (a prefix above the kinds, "*", an unknown kind, a
//     topic of the wrong shape): only an Unrestricted principal.
func (p *Principal) AllowTopic(topic string) bool {
	if !p.Can(ScopeRead) {
		return false
	}
	if p.Unrestricted() {
		return true
	}
	body, prefix := strings.CutSuffix(topic, "*")
	kind, rest, ok := strings.Cut(body, "/")
	if !ok {
		// "locks" exactly is the locks topic; anything else without a "/"
		// ("contexts", "con*", "*") is not of one kind.
		return !prefix && body == "locks" && p.Can(ScopeAdmin)
	}
	switch kind {
	case "locks", "cron":
		return p.Can(ScopeAdmin)
	case "contexts":
		if prefix {
			return p.prefixes.contexts.covers(rest)
		}
		return p.prefixes.contexts.match(rest)
	case "queues":
		if prefix {
			return p.prefixes.queues.covers(rest)
		}
		return p.prefixes.queues.match(rest)
	case "streams":
		if prefix {
			return p.prefixes.streams.covers(rest)
		}
		// streams/{s}/{g}: rest is "{s}/{g}", matched as AllowStream does.
		if strings.Count(rest, "/") != 1 {
			return false
		}
		return p.prefixes.streams.match(rest)
	}
	return false
}

// CheckTopic is AllowTopic as an error: nil, or a 403 for the WebSocket
// error frame or the SSE answer.
func (p *Principal) CheckTopic(topic string) error {
	if !p.Can(ScopeRead) {
		return p.Require(ScopeRead)
	}
	if p.AllowTopic(topic) {
		return nil
	}
	return Denied("topic %q is outside the credential's prefixes", topic)
}

// SearchFilter says which search hits a principal may see. For each kind a
// nil list means every hit; otherwise a hit must match one of the patterns
// (an empty non-nil list: no hit of that kind).
type SearchFilter struct {
	// Contexts limits work unit hits by their context_id.
	Contexts []Pattern
	// Streams limits stream item hits by "{stream}/{group}".
	Streams []Pattern
}

// Unlimited reports whether the filter lets every hit through.
func (f SearchFilter) Unlimited() bool { return f.Contexts == nil && f.Streams == nil }

// AllowHit reports whether a hit passes: kind "workunit" by contextID,
// "stream_item" by stream and group; other kinds only when unlimited.
func (f SearchFilter) AllowHit(kind, contextID, stream, group string) bool {
	switch kind {
	case "workunit":
		return f.Contexts == nil || (patterns{list: f.Contexts}).match(contextID)
	case "stream_item":
		return f.Streams == nil || (patterns{list: f.Streams}).match(stream+"/"+group)
	}
	return f.Unlimited()
}

// SearchFilter gives the limits that search must apply for the principal
// (copies: the caller may keep them). A nil principal gets a filter that
// lets nothing through.
func (p *Principal) SearchFilter() SearchFilter {
	if p == nil {
		return SearchFilter{Contexts: []Pattern{}, Streams: []Pattern{}}
	}
	return SearchFilter{Contexts: p.prefixes.contexts.export(), Streams: p.prefixes.streams.export()}
}
