package auth

import (
	"fmt"
	"net/http"
)

// Decision is the class of a refusal, which picks the answer's status and
// code: the api layer maps it in its error table (errors.Is against
// ErrUnauthenticated and ErrPermissionDenied).
type Decision int

const (
	// Unauthenticated: no credentials, or credentials that are not valid
	// (401 unauthenticated).
	Unauthenticated Decision = iota + 1
	// PermissionDenied: valid credentials without the scope or the prefix
	// (403 permission_denied).
	PermissionDenied
)

// Status is the HTTP status of the decision.
func (d Decision) Status() int {
	if d == PermissionDenied {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// Code is the API error code of the decision.
func (d Decision) Code() string {
	if d == PermissionDenied {
		return "permission_denied"
	}
	return "unauthenticated"
}

// Error is a refused request. Message is safe to send to the client: it
// never holds the presented token or any secret. Reason is a short stable
// word for logs and metrics.
type Error struct {
	Decision Decision
	// Reason: missing, malformed, unknown_key, expired, not_yet_valid,
	// bad_signature (401); scope, prefix (403). Empty only in the class
	// sentinels ErrUnauthenticated and ErrPermissionDenied.
	Reason  string
	Message string
}

func (e *Error) Error() string { return "auth: " + e.Message }

// Is makes errors.Is(err, ErrUnauthenticated) true for every 401 refusal,
// errors.Is(err, ErrPermissionDenied) for every 403 one, and
// errors.Is(err, ErrExpired) (and the other sentinels) for refusals of that
// reason whatever their message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Decision == e.Decision && (t.Reason == "" || t.Reason == e.Reason)
}

// The classes, for the api layer's error table.
var (
	ErrUnauthenticated  = &Error{Decision: Unauthenticated, Message: "unauthenticated"}
	ErrPermissionDenied = &Error{Decision: PermissionDenied, Message: "permission denied"}
)

// The 401 refusals of Authenticate.
var (
	ErrMissingCredentials = &Error{Unauthenticated, "missing", "missing credentials: send Authorization: Bearer <API key or JWT>"}
	ErrMalformed          = &Error{Unauthenticated, "malformed", "malformed credentials"}
	ErrUnknownKey         = &Error{Unauthenticated, "unknown_key", "unknown API key"}
	ErrExpired            = &Error{Unauthenticated, "expired", "token expired"}
	ErrNotYetValid        = &Error{Unauthenticated, "not_yet_valid", "token not valid yet (nbf)"}
	ErrBadSignature       = &Error{Unauthenticated, "bad_signature", "token signature is invalid"}
)

// The 403 reasons, for errors.Is.
var (
	ErrScope  = &Error{PermissionDenied, "scope", "missing scope"}
	ErrPrefix = &Error{PermissionDenied, "prefix", "outside the credential's prefixes"}
)

func unauthenticated(reason, msg string) *Error {
	return &Error{Decision: Unauthenticated, Reason: reason, Message: msg}
}

// Denied is a 403 for a name outside the principal's prefixes, e.g.
// Denied("context %q is outside the credential's prefixes", id). The
// message may name the resource asked for; never a credential.
func Denied(format string, args ...any) *Error {
	return &Error{Decision: PermissionDenied, Reason: "prefix", Message: fmt.Sprintf(format, args...)}
}
