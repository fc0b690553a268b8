package notifier

import (
	"encoding/json"
	"errors"

	"engram/internal/router"
)

// serverFrame is every frame the server sends on /v1/ws but events, which
// are written from their pre-encoded JSON.
type serverFrame struct {
	Op        string  `json:"op"`
	ID        string  `json:"id,omitempty"`
	HeadSeq   *uint64 `json:"head_seq,omitempty"`
	Code      string  `json:"code,omitempty"`
	Message   string  `json:"message,omitempty"`
	LastSeq   *uint64 `json:"last_seq,omitempty"`
	OldestSeq *uint64 `json:"oldest_seq,omitempty"`
}

func (f serverFrame) bytes() []byte {
	b, _ := json.Marshal(f)
	return b
}

func u64(v uint64) *uint64 { return &v }

// cutNotice describes why a subscription ended, as code, message and the
// seq fields of the error frame.
func cutNotice(reason error, last uint64) serverFrame {
	var ht *router.HistoryTruncatedError
	switch {
	case errors.Is(reason, router.ErrLagged):
		return serverFrame{Op: "error", Code: "lagged", LastSeq: u64(last),
			Message: "the subscription fell behind and was ended; resume with after_seq = last_seq"}
	case errors.As(reason, &ht):
		return serverFrame{Op: "error", Code: "history_truncated", OldestSeq: u64(ht.OldestSeq), LastSeq: u64(last),
			Message: "events after after_seq were removed by retention"}
	case errors.Is(reason, router.ErrClosed):
		return serverFrame{Op: "error", Code: "unavailable", LastSeq: u64(last),
			Message: "the server is shutting down; resume with after_seq = last_seq"}
	}
	return serverFrame{Op: "error", Code: "internal", LastSeq: u64(last), Message: "the subscription failed; resume with after_seq = last_seq"}
}
