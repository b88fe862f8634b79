package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

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
