package controllers

import (
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// throttle remembers when this process last made a summarising write (a
// session's counts, a normal-flow event) per key, to space them out. Losing
// it on restart costs one early write, nothing more.
type throttle struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// wait is how long until key may write again; 0 means now.
func (t *throttle) wait(key string, interval time.Duration, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if wait := t.last[key].Add(interval).Sub(now); wait > 0 {
		return wait
	}
	return 0
}

func (t *throttle) mark(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last = map[string]time.Time{}
	}
	t.last[key] = now
}

// forget drops every key of a session that is gone.
func (t *throttle) forget(session types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prefix := session.String() + "/"
	for k := range t.last {
		if strings.HasPrefix(k, prefix) {
			delete(t.last, k)
		}
	}
}
