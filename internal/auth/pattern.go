package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Pattern is one allowed name or name prefix of a Prefixes list.
type Pattern struct {
	// Text is the name, or for a prefix the part before the "*" ("" for
	// "*", which matches every name).
	Text string
	// Prefix: Text is a prefix; otherwise the name must equal Text.
	Prefix bool
}

// Match reports whether name is allowed by the pattern.
func (p Pattern) Match(name string) bool {
	if p.Prefix {
		return strings.HasPrefix(name, p.Text)
	}
	return name == p.Text
}

// Covers reports whether every name that starts with prefix matches the
// pattern: only a prefix pattern whose text is a prefix of prefix does.
func (p Pattern) Covers(prefix string) bool {
	return p.Prefix && strings.HasPrefix(prefix, p.Text)
}

func (p Pattern) String() string {
	if p.Prefix {
		return p.Text + "*"
	}
	return p.Text
}

// patterns is the compiled list of one kind: all (the kind left out)
// allows everything, otherwise a name must match one of list.
type patterns struct {
	all  bool
	list []Pattern
}

func (ps patterns) match(name string) bool {
	if ps.all {
		return true
	}
	for _, p := range ps.list {
		if p.Match(name) {
			return true
		}
	}
	return false
}

// covers reports whether every name starting with prefix is allowed.
func (ps patterns) covers(prefix string) bool {
	if ps.all {
		return true
	}
	for _, p := range ps.list {
		if p.Covers(prefix) {
			return true
		}
	}
	return false
}

// export gives the list for SearchFilter: nil for all.
func (ps patterns) export() []Pattern {
	if ps.all {
		return nil
	}
	out := make([]Pattern, len(ps.list))
	copy(out, ps.list)
	return out
}

// compiledPrefixes are a credential's four compiled lists.
type compiledPrefixes struct {
	contexts, streams, queues, locks patterns
}

func (c compiledPrefixes) unrestricted() bool {
	return c.contexts.all && c.streams.all && c.queues.all && c.locks.all
}

// compilePrefixes validates and compiles p; where names the field
// ("auth.keys[0].prefixes", "engram_prefixes").
func compilePrefixes(p Prefixes, where string) (compiledPrefixes, error) {
	var c compiledPrefixes
	var err error
	if c.contexts, err = compileList(p.Contexts, where+".contexts", kindName); err != nil {
		return c, err
	}
	if c.streams, err = compileList(p.Streams, where+".streams", kindStream); err != nil {
		return c, err
	}
	if c.queues, err = compileList(p.Queues, where+".queues", kindName); err != nil {
		return c, err
	}
	if c.locks, err = compileList(p.Locks, where+".locks", kindLock); err != nil {
		return c, err
	}
	return c, nil
}

type nameKind int

const (
	kindName   nameKind = iota // context ids, queue topics: API.md's name characters
	kindStream                 // "{stream}/{group}"
	kindLock                   // lock resources: printable UTF-8, "/" allowed
)

// maxPatterns bounds one list (a JWT carries its own lists).
const maxPatterns = 1024

func compileList(list []string, where string, kind nameKind) (patterns, error) {
	if list == nil {
		return patterns{all: true}, nil
	}
	if len(list) > maxPatterns {
		return patterns{}, fmt.Errorf("%s: more than %d patterns", where, maxPatterns)
	}
	ps := patterns{list: make([]Pattern, 0, len(list))}
	for i, s := range list {
		p, err := compilePattern(s, kind)
		if err != nil {
			return patterns{}, fmt.Errorf("%s[%d]: %w", where, i, err)
		}
		ps.list = append(ps.list, p)
	}
	return ps, nil
}

func compilePattern(s string, kind nameKind) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("empty pattern (leave the list out to allow everything, or write \"*\")")
	}
	text, prefix := strings.CutSuffix(s, "*")
	if strings.Contains(text, "*") {
		return Pattern{}, fmt.Errorf("%q: \"*\" is allowed only at the end", s)
	}
	switch kind {
	case kindName:
		if err := checkNameChars(text, false); err != nil {
			return Pattern{}, fmt.Errorf("%q: %w", s, err)
		}
		if !prefix && len(text) > 128 {
			return Pattern{}, fmt.Errorf("%q: longer than 128 bytes", s)
		}
	case kindStream:
		if err := checkNameChars(text, true); err != nil {
			return Pattern{}, fmt.Errorf("%q: %w", s, err)
		}
		// Stream and group names hold no "/", so "{stream}/{group}" has
		// exactly one: an exact pattern needs one between two names, and a
		// prefix at most one.
		n := strings.Count(text, "/")
		stream, group, _ := strings.Cut(text, "/")
		switch {
		case !prefix && (n != 1 || stream == "" || group == ""):
			return Pattern{}, fmt.Errorf("%q matches no \"{stream}/{group}\" (for every group of a stream write \"%s/*\")", s, strings.TrimSuffix(text, "/"))
		case prefix && (n > 1 || (n == 1 && stream == "")):
			return Pattern{}, fmt.Errorf("%q matches no \"{stream}/{group}\"", s)
		}
	case kindLock:
		if !utf8.ValidString(text) {
			return Pattern{}, fmt.Errorf("not valid UTF-8")
		}
		for _, r := range text {
			if r < 0x20 || r == 0x7f {
				return Pattern{}, fmt.Errorf("%q: holds a control character", s)
			}
		}
		if len(text) > 512 {
			return Pattern{}, fmt.Errorf("longer than 512 bytes")
		}
	}
	return Pattern{Text: text, Prefix: prefix}, nil
}

// checkNameChars allows API.md's name characters [A-Za-z0-9._~:@-], and
// "/" with slash.
func checkNameChars(s string, slash bool) error {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) && !(slash && s[i] == '/') {
			if slash {
				return fmt.Errorf("only name characters [A-Za-z0-9._~:@-], \"/\" and a trailing \"*\"")
			}
			return fmt.Errorf("only name characters [A-Za-z0-9._~:@-] and a trailing \"*\"")
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '.', c == '_', c == '~', c == ':', c == '@', c == '-':
		return true
	}
	return false
}

// validName reports whether s is a name: [A-Za-z0-9._~:@-]{1,128}.
func validName(s string) bool {
	return s != "" && len(s) <= 128 && checkNameChars(s, false) == nil
}
