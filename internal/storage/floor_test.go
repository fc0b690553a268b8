package storage

import (
	"bytes"
	"testing"
)

func TestScanFloor(t *testing.T) {
	var f ScanFloor
	p := LockExpiryPrefix()
	if got := f.Lower(p); !bytes.Equal(got, p) {
		t.Fatalf("empty floor = %x, want the prefix %x", got, p)
	}
	k := LockExpiryKey(42, [16]byte{1})
	f.Raise(k)
	if got := f.Lower(p); !bytes.Equal(got, k) {
		t.Fatalf("floor = %x, want %x", got, k)
	}
}
