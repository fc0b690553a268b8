package engine

import (
	"errors"
	"fmt"
)

// The kinds of error the engine returns. The api package maps each to a
// status and code; the message of the *Error is meant for the client.
var (
	ErrInvalid  = errors.New("engine: invalid argument")
	ErrNotFound = errors.New("engine: not found")
	ErrConflict = errors.New("engine: conflict")
	ErrGone     = errors.New("engine: gone")
)

// Error is an error for the client: Msg names what was wrong and which
// field; Details carries structured extras.
type Error struct {
	Kind    error
	Msg     string
	Details map[string]any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Errorf is an error for the client of kind (ErrInvalid, ErrNotFound,
// ErrConflict, ErrGone), for the packages beside the engine (lockmgr, cron)
// so that the api maps theirs like the engine's.
func Errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return &Error{Kind: ErrNotFound, Msg: fmt.Sprintf(format, args...)}
}

func gonef(format string, args ...any) error {
	return &Error{Kind: ErrGone, Msg: fmt.Sprintf(format, args...)}
}

func conflictf(format string, args ...any) error {
	return &Error{Kind: ErrConflict, Msg: fmt.Sprintf(format, args...)}
}

// Invalid wraps a client-facing message as an invalid-argument error.
func Invalid(err error) error { return &Error{Kind: ErrInvalid, Msg: err.Error()} }
