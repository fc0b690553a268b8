package lockmgr

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	"engram/internal/storage"
)

// The expiry loop: one goroutine, one timer. Its schedule is the expiry
// index in storage, so it keeps no memory per lock and, after a restart,
// its first look releases every lock that expired while the server was
// down.

// Start starts the expiry loop; Close stops it.
func (m *Manager) Start() {
	m.startOnce.Do(func() {
		m.mu.Lock()
		m.started = true
		m.mu.Unlock()
		go m.expiryLoop()
	})
}

// Close stops the expiry loop and ends waiting acquires; it waits for the
// loop. Call it before closing the sequencer.
func (m *Manager) Close() {
	m.closeOnce.Do(func() { close(m.stop) })
	m.mu.Lock()
	started := m.started
	m.mu.Unlock()
	if started {
		<-m.done
	}
}

func (m *Manager) expiryLoop() {
	defer close(m.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	retry := 10 * time.Millisecond
	for {
		next, err := m.nextExpiry()
		if err != nil {
			m.log.Error("lock expiry: read the index", "err", err)
			next = m.cfg.Now().Add(retry).UnixNano()
		}
		wait := time.Hour
		if next != 0 {
			wait = time.Unix(0, next).Sub(m.cfg.Now())
		}
		if wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-m.wake:
				if !t.Stop() {
					<-t.C
				}
				continue
			case <-m.stop:
				return
			}
		}
		if err := m.expireDue(context.Background()); err != nil {
			select {
			case <-m.stop:
				return
			default:
			}
			m.log.Error("lock expiry: expire due locks", "err", err)
			select {
			case <-time.After(retry):
			case <-m.stop:
				return
			}
			retry = min(2*retry, 5*time.Second)
			continue
		}
		retry = 10 * time.Millisecond
	}
}

func (m *Manager) nextExpiry() (int64, error) {
	p := storage.LockExpiryPrefix()
	it, err := m.store.NewIter(m.expLow.Lower(storage.LockExpiryPrefix()), storage.PrefixEnd(p))
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		return 0, it.Error()
	}
	at, _, err := storage.LockExpiryOf(it.Key())
	return at, err
}

// expireDue drops up to expiryChunk locks whose time has come, in one
// command.
func (m *Manager) expireDue(ctx context.Context) error {
	var lags []time.Duration
	_, _, err := m.submit(ctx, func(l *ltx) (any, error) {
		lags = lags[:0]
		p := storage.LockExpiryPrefix()
		upper := binary.BigEndian.AppendUint64(append([]byte(nil), p...), uint64(l.now)+1)
		it, err := l.tx.NewIter(m.expLow.Lower(storage.LockExpiryPrefix()), upper)
		if err != nil {
			return nil, err
		}
		type due struct {
			key []byte
			r   record
			ok  bool // the value held a copy of the record
		}
		var dues []due
		for ok := it.First(); ok && len(dues) < expiryChunk; ok = it.Next() {
			d := due{key: append([]byte(nil), it.Key()...)}
			if v := it.Value(); len(v) > 0 && json.Unmarshal(v, &d.r) == nil {
				d.ok = true
			}
			dues = append(dues, d)
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		keys := make([][]byte, len(dues))
		for i, d := range dues {
			keys[i] = d.key
			at, id, err := storage.LockExpiryOf(d.key)
			if err != nil {
				return nil, err
			}
			r := &dues[i].r
			if !d.ok || r.ID != id || r.ExpiresAt != at {
				// No usable copy: read the record.
				if r, err = l.get(id); err != nil {
					return nil, err
				}
			}
			if r == nil || r.ExpiresAt != at {
				l.tx.Delete(d.key) // a stale entry
				continue
			}
			lags = append(lags, time.Duration(l.now-at))
			if err := l.drop(r, Expired); err != nil {
				return nil, err
			}
		}
		if n := len(keys); n > 0 {
			// The command succeeds from here on (a failed commit makes the
			// store read-only), so the bound may move now.
			m.expLow.Raise(keys[n-1])
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	for _, lag := range lags {
		m.m.expiryLag.Observe(lag.Seconds())
	}
	return nil
}
