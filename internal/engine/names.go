package engine

import (
	"strings"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Limits on input. API.md fixes the name rules; the others are ours and are
// documented in api/openapi.yaml.
const (
	MaxNameLen           = 128
	MaxMetadataKeys      = 64
	MaxMetadataKeyLen    = 128
	MaxMetadataValueLen  = 8192
	MaxRelationships     = 256
	MaxBatchUnits        = 1000
	MaxDisplayNameLen    = 256
	MaxContextAgents     = 1024
	MaxPinnedUnits       = 1024
	DefaultListLimit     = 100
	MaxListLimit         = 1000
	maxFilteredScan      = 10000
	maxPatchListElements = 1024
)

// ValidName reports whether s matches ^[A-Za-z0-9._~:@-]{1,128}$ (bytes
// too, so that a header is checked without a copy: request ids).
func ValidName[S string | []byte](s S) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '~', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkName(field, s string) error {
	if s == "" {
		return invalidf("%s: required", field)
	}
	if !ValidName(s) {
		return invalidf("%s: %q must match ^[A-Za-z0-9._~:@-]{1,128}$", field, Truncate(s))
	}
	return nil
}

// ParseID parses a work unit id (a ULID, case-insensitive).
func ParseID(field, s string) (ulid.ULID, error) {
	id, err := ulid.ParseStrict(s)
	if err != nil {
		return id, invalidf("%s: %q is not a ULID (26 characters of Crockford base32)", field, Truncate(s))
	}
	return id, nil
}

func checkMetadata(field string, m map[string]string) error {
	if len(m) > MaxMetadataKeys {
		return invalidf("%s: %d keys, at most %d", field, len(m), MaxMetadataKeys)
	}
	for k, v := range m {
		if err := checkMetadataEntry(field, k, v); err != nil {
			return err
		}
	}
	return nil
}

// checkMetadataEntry checks one key and value of a metadata map.
func checkMetadataEntry(field, k, v string) error {
	switch {
	case k == "":
		return invalidf("%s: empty key", field)
	case len(k) > MaxMetadataKeyLen:
		return invalidf("%s: key %q longer than %d bytes", field, Truncate(k), MaxMetadataKeyLen)
	case !utf8.ValidString(k) || !utf8.ValidString(v):
		return invalidf("%s.%s: not valid UTF-8", field, Truncate(k))
	case len(v) > MaxMetadataValueLen:
		return invalidf("%s.%s: value longer than %d bytes", field, Truncate(k), MaxMetadataValueLen)
	}
	return nil
}

// Truncate shortens s for use in an error message, without cutting a
// UTF-8 character in half.
func Truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// enum maps the names of an enumeration to one-byte codes (stored in index
// keys) and back.
type enum struct {
	field string
	names []string
}

func (e enum) code(s string) (byte, bool) {
	for i, n := range e.names {
		if n == s {
			return byte(i + 1), true
		}
	}
	return 0, false
}

func (e enum) name(c byte) string {
	if c == 0 || int(c) > len(e.names) {
		return ""
	}
	return e.names[c-1]
}

func (e enum) check(field, s string) (byte, error) {
	if s == "" {
		return 0, invalidf("%s: required", field)
	}
	c, ok := e.code(s)
	if !ok {
		return 0, invalidf("%s: unknown %s %q (one of %s)", field, e.field, Truncate(s), strings.Join(e.names, ", "))
	}
	return c, nil
}

// CheckUnitType checks a work unit type named by field.
func CheckUnitType(field, s string) error {
	_, err := unitTypes.check(field, s)
	return err
}

// Codes are stored: append new names, never reorder.
var (
	unitTypes = enum{"work unit type", []string{
		"MESSAGE", "REASONING", "TOOL_CALL", "TOOL_RESULT", "OBSERVATION", "PLAN", "ERROR", "SYSTEM"}}
	relTypes = enum{"relationship type", []string{
		"SEQUENTIAL", "CAUSES", "DEPENDS_ON", "REFERENCES", "RESPONDS_TO"}}
)
