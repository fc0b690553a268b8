package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"engram/internal/engine"
	"engram/internal/wal"
)

func TestInvalid(t *testing.T) {
	err := engine.Invalid(errors.New("payload: expected an object"))
	wantErr(t, err, engine.ErrInvalid, "payload: expected an object")
	if errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrConflict) {
		t.Errorf("%v matches another kind", err)
	}
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Msg != "payload: expected an object" {
		t.Errorf("errors.As: %#v", ee)
	}
}

func TestGetUnitErrors(t *testing.T) {
	v := newEnv(t)
	_, err := v.e.GetUnit("not-a-ulid")
	wantErr(t, err, engine.ErrInvalid, "id: ", "not a ULID")
	_, err = v.e.GetUnit("")
	wantErr(t, err, engine.ErrInvalid, "id: ")
	id := newID()
	_, err = v.e.GetUnit(strings.ToLower(id))
	wantErr(t, err, engine.ErrNotFound, "work unit "+id+" not found")
}

// TestErrorMessagesTruncated: a long bad value is cut in the message, at a
// rune boundary.
func TestErrorMessagesTruncated(t *testing.T) {
	v := newEnv(t)
	long := strings.Repeat("é", 200) // 400 bytes, not a valid name
	in := msg(long, "a")
	_, err := v.e.CreateUnit(context.Background(), &in)
	wantErr(t, err, engine.ErrInvalid, "context_id: ", "…")
	if !utf8.ValidString(err.Error()) || len(err.Error()) > 200 {
		t.Errorf("message %q: %d bytes, valid UTF-8 %v", err, len(err.Error()), utf8.ValidString(err.Error()))
	}
	in = msg("c", "a")
	in.Type = strings.Repeat("T", 1000)
	_, err = v.e.CreateUnit(context.Background(), &in)
	wantErr(t, err, engine.ErrInvalid, "type: ", "…")
	if len(err.Error()) > 300 {
		t.Errorf("message is %d bytes", len(err.Error()))
	}
}

func TestSeqCursorNotANumber(t *testing.T) {
	v := newEnv(t)
	v.mustCreate(t, msg("c", "a"))
	_, err := v.e.ListUnits(engine.ListQuery{ContextID: "c", Cursor: "dWQ6YWJj"}) // ud:abc
	wantErr(t, err, engine.ErrInvalid, "cursor: ")
}

// TestClosedSequencer: writes after the sequencer closed fail with its
// error, not as bad input; reads still work.
func TestClosedSequencer(t *testing.T) {
	v := newEnv(t)
	u := v.mustCreate(t, msg("c", "a"))
	if err := v.seq.Close(); err != nil {
		t.Fatal(err)
	}
	in := msg("c", "a")
	_, err := v.e.CreateUnit(context.Background(), &in)
	if !errors.Is(err, wal.ErrClosed) || errors.Is(err, engine.ErrInvalid) {
		t.Errorf("CreateUnit after close: %v", err)
	}
	_, err = v.e.CreateContext(context.Background(), engine.ContextInput{ID: "x"})
	if !errors.Is(err, wal.ErrClosed) {
		t.Errorf("CreateContext after close: %v", err)
	}
	if _, err := v.e.GetUnit(u.ID); err != nil {
		t.Errorf("GetUnit after close: %v", err)
	}
}
