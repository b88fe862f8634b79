package controllers

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

func equalStatus(a, b opsv1.OpsSessionStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

func equalConditions(a, b []metav1.Condition) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// ledgerOnlyShrank reports whether next holds only entries of cur.
func ledgerOnlyShrank(cur, next []opsv1.LedgerEntry) bool {
	for _, e := range next {
		if !slices.Contains(cur, e) {
			return false
		}
	}
	return true
}

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

// digest gathers a session's normal-flow events between emissions.
type digest struct {
	mu      sync.Mutex
	pending map[string]*eventBatch // by session key + "/" + reason
}

type eventBatch struct {
	count  int
	names  []string // the first few, for the message
	detail string
}

const digestNames = 10

func (d *digest) add(key string, names []string, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = map[string]*eventBatch{}
	}
	b := d.pending[key]
	if b == nil {
		b = &eventBatch{}
		d.pending[key] = b
	}
	b.count += len(names)
	b.detail = detail
	for _, n := range names {
		if len(b.names) < digestNames {
			b.names = append(b.names, n)
		}
	}
}

func (d *digest) take(key string) *eventBatch {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.pending[key]
	delete(d.pending, key)
	return b
}

func (d *digest) has(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending[key] != nil
}

func (b *eventBatch) message(reason string) string {
	list := strings.Join(b.names, ", ")
	if b.count > len(b.names) {
		list += fmt.Sprintf(" and %d more", b.count-len(b.names))
	}
	return fmt.Sprintf("%s %d operation(s)%s: %s", strings.ToLower(reason), b.count, b.detail, list)
}

// ownWrites remembers, by UID, the operations this process wrote or deleted
// a moment ago, until its cache catches up. A pass that runs before the
// informer has delivered the process's own write then plans on what is
// stored, instead of sending a write that can only conflict, or a second
// delete.
type ownWrites struct {
	mu    sync.Mutex
	m     map[types.UID]ownWrite
	swept time.Time // when expired entries were last dropped
}

type ownWrite struct {
	from string           // the resourceVersion the write replaced
	op   *opsv1.Operation // what was stored; nil once deleted
	at   time.Time
}

// ownWriteTTL bounds how long an entry outlives a cache that never catches
// up (the object was deleted by someone else meanwhile).
const ownWriteTTL = time.Minute

// record notes that the object at resourceVersion from is now op, or gone
// when op is nil. A nil receiver records nothing.
func (o *ownWrites) record(uid types.UID, from string, op *opsv1.Operation, now time.Time) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[types.UID]ownWrite{}
	}
	// Entries of objects the cache stopped showing (deleted) are never
	// viewed again; drop the expired ones once per TTL, not on every write.
	if now.Sub(o.swept) > ownWriteTTL {
		for u, w := range o.m {
			if now.Sub(w.at) > ownWriteTTL {
				delete(o.m, u)
			}
		}
		o.swept = now
	}
	o.m[uid] = ownWrite{from: from, op: op, at: now}
}

// view returns what is stored for a cached operation, and false when this
// process deleted it. While the cache still holds the version this process
// replaced, that is the written object; otherwise the cache has caught up
// (or someone wrote after us) and the cached one is current.
func (o *ownWrites) view(cached *opsv1.Operation, now time.Time) (*opsv1.Operation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.m[cached.UID]
	switch {
	case !ok:
		return cached, true
	case cached.ResourceVersion != w.from || now.Sub(w.at) > ownWriteTTL:
		delete(o.m, cached.UID)
		return cached, true
	}
	return w.op, w.op != nil
}
