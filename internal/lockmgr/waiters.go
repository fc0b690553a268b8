package lockmgr

import (
	"slices"
	"sync"
)

// waiter is one acquire in line for its resources.
type waiter struct {
	resources []string
	ready     chan struct{} // cap 1: its turn may have come
}

// queues are the per-resource lines of acquirers, in arrival order. A
// waiter joins every line of its resources at once, so all lines agree on
// the order of the waiters they share.
type queues struct {
	mu sync.Mutex
	q  map[string][]*waiter
}

func (qs *queues) enqueue(resources []string) *waiter {
	w := &waiter{resources: resources, ready: make(chan struct{}, 1)}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for _, r := range resources {
		qs.q[r] = append(qs.q[r], w)
	}
	return w
}

// remove takes w out of its lines and wakes whoever is now first.
func (qs *queues) remove(w *waiter) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for _, r := range w.resources {
		line := qs.q[r]
		if i := slices.Index(line, w); i >= 0 {
			line = slices.Delete(line, i, i+1)
		}
		if len(line) == 0 {
			delete(qs.q, r)
		} else {
			qs.q[r] = line
		}
	}
	qs.wakeLocked(w.resources)
}

// isHead reports whether w is first in every line it is in.
func (qs *queues) isHead(w *waiter) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	return qs.headLocked(w)
}

func (qs *queues) headLocked(w *waiter) bool {
	for _, r := range w.resources {
		if line := qs.q[r]; len(line) == 0 || line[0] != w {
			return false
		}
	}
	return true
}

// wakeResources tells the first waiter of each resource's line that its
// turn may have come (a lock on it was released or expired).
func (qs *queues) wakeResources(resources []string) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.wakeLocked(resources)
}

func (qs *queues) wakeLocked(resources []string) {
	for _, r := range resources {
		line := qs.q[r]
		if len(line) == 0 || !qs.headLocked(line[0]) {
			continue
		}
		select {
		case line[0].ready <- struct{}{}:
		default:
		}
	}
}
