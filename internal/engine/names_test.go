package engine_test

import (
	"strings"
	"testing"

	"engram/internal/engine"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"c1", true},
		{"Agent-7", true},
		{"a.b_c~d:e@f-g", true},
		{"0123456789", true},
		{"ABCXYZabcxyz", true},
		{"user@example.com", true},
		{"urn:x:y", true},
		{"...", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a+b", false},
		{"a%20b", false},
		{"a?b", false},
		{"a#b", false},
		{"a*", false},
		{"é", false},
		{"日本", false},
		{"a\u200bb", false},
		{"\xff", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := engine.ValidName(tc.in); got != tc.want {
				t.Errorf("ValidName(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	id := newID()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"upper", id, true},
		{"lower", strings.ToLower(id), true},
		{"empty", "", false},
		{"short", id[:25], false},
		{"long", id + "0", false},
		{"bad char U", "0" + strings.Repeat("U", 25), false},
		{"overflow", "8" + strings.Repeat("0", 25), false},
		{"max", "7" + strings.Repeat("Z", 25), true},
		{"words", "not-a-ulid", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := engine.ParseID("field", tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("ParseID(%q): %v", tc.in, err)
				}
				if u.String() != strings.ToUpper(tc.in) {
					t.Errorf("ParseID(%q) = %s", tc.in, u)
				}
				return
			}
			wantErr(t, err, engine.ErrInvalid, "field: ", "not a ULID")
		})
	}
}

func TestCheckLimit(t *testing.T) {
	tests := []struct {
		in, want int
		ok       bool
	}{
		{0, engine.DefaultListLimit, true},
		{1, 1, true},
		{engine.MaxListLimit, engine.MaxListLimit, true},
		{engine.MaxListLimit + 1, 0, false},
		{-1, 0, false},
	}
	for _, tc := range tests {
		got, err := engine.CheckLimit(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("CheckLimit(%d) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok {
			wantErr(t, err, engine.ErrInvalid, "limit: ")
		}
	}
}
