package lockmgr

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain proves that every test stops what it started: the expiry loop,
// waiting acquires, the sequencer and Pebble's goroutines.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
