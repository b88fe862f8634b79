package opsclient

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/objwatch"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// maxTombstones bounds how many recent deletions a session watch remembers.
const maxTombstones = 4096

// sessionWatch is one watch of a session's Operations, shared by everything
// a registry waits for (admission decisions, watchers). One watch per
// session, instead of one per wait, spares the API server a watch setup for
// every operation.
type sessionWatch struct {
	informer toolscache.SharedIndexInformer
	ns       string
	session  string
	// stopped is closed once the watch has stopped (start's ctx ended).
	stopped <-chan struct{}

	mu      sync.Mutex
	waiters map[string][]*waiter
	// tombstones: UIDs of operations recently deleted, so a wait registered
	// just after the informer saw a deletion does not hang.
	tombstones map[string]types.UID
	order      []string
}

type waiter struct {
	uid  types.UID
	done func(*opsv1.Operation) bool
	ch   chan waitResult
}

type waitResult struct {
	op  *opsv1.Operation
	err error
}

func newSessionWatch(c client.WithWatch, ns, session string) *sessionWatch {
	lw := objwatch.ListWatch(c, ns, &opsv1.OperationList{}, client.MatchingFields{"spec.sessionName": session})
	sw := &sessionWatch{
		informer:   toolscache.NewSharedIndexInformer(lw, &opsv1.Operation{}, 0, toolscache.Indexers{}),
		ns:         ns,
		session:    session,
		waiters:    map[string][]*waiter{},
		tombstones: map[string]types.UID{},
	}
	_, _ = sw.informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sw.seen(obj) },
		UpdateFunc: func(_, obj any) { sw.seen(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if op, ok := obj.(*opsv1.Operation); ok {
				sw.deleted(op)
			}
		},
	})
	return sw
}

// start runs the watch, in the background, until ctx ends.
func (sw *sessionWatch) start(ctx context.Context) {
	sw.stopped = ctx.Done()
	go sw.informer.RunWithContext(ctx)
}

// ready waits until the watch has listed the session's operations, so that
// a wait can tell an operation not seen yet from a deleted one. It gives
// ctx's error if ctx ends first, and errWatchStopped if the watch stops
// first.
func (sw *sessionWatch) ready(ctx context.Context) error {
	select {
	case <-sw.informer.HasSyncedChecker().Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-sw.stopped:
		return sw.stoppedErr()
	}
}

// await waits for w, or ctx's end, or the watch's end (which would leave w
// waiting forever).
func (sw *sessionWatch) await(ctx context.Context, name string, w *waiter) (*opsv1.Operation, error) {
	select {
	case res := <-w.ch:
		return res.op, res.err
	case <-ctx.Done():
		sw.cancel(name, w)
		return nil, ctx.Err()
	case <-sw.stopped:
		sw.cancel(name, w)
		return nil, sw.stoppedErr()
	}
}

// errWatchStopped: the Runtime was closed, which stops its session watches.
var errWatchStopped = errors.New("runtime closed")

func (sw *sessionWatch) stoppedErr() error {
	return fmt.Errorf("watching operations of session %s: %w", sw.session, errWatchStopped)
}

// wait resolves when the operation with this UID satisfies done, or is deleted.
func (sw *sessionWatch) wait(name string, uid types.UID, done func(*opsv1.Operation) bool) *waiter {
	w := &waiter{uid: uid, done: done, ch: make(chan waitResult, 1)}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if obj, ok, _ := sw.informer.GetStore().GetByKey(sw.ns + "/" + name); ok {
		if op := obj.(*opsv1.Operation); op.UID == uid && done(op) {
			w.ch <- waitResult{op: op.DeepCopy()}
			return w
		}
	} else if sw.tombstones[name] == uid {
		w.ch <- waitResult{err: &lifecycle.NotFoundError{ID: name}}
		return w
	}
	sw.waiters[name] = append(sw.waiters[name], w)
	return w
}

// cancel forgets a waiter whose caller gave up.
func (sw *sessionWatch) cancel(name string, w *waiter) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	ws := sw.waiters[name]
	for i := range ws {
		if ws[i] == w {
			sw.waiters[name] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(sw.waiters[name]) == 0 {
		delete(sw.waiters, name)
	}
}

func (sw *sessionWatch) seen(obj any) {
	op, ok := obj.(*opsv1.Operation)
	if !ok {
		return
	}
	sw.resolve(op.Name, func(w *waiter) (waitResult, bool) {
		if w.uid != op.UID || !w.done(op) {
			return waitResult{}, false
		}
		return waitResult{op: op.DeepCopy()}, true
	})
}

func (sw *sessionWatch) deleted(op *opsv1.Operation) {
	sw.mu.Lock()
	if _, ok := sw.tombstones[op.Name]; !ok {
		sw.order = append(sw.order, op.Name)
	}
	sw.tombstones[op.Name] = op.UID
	if len(sw.order) > maxTombstones {
		delete(sw.tombstones, sw.order[0])
		sw.order = sw.order[1:]
	}
	sw.mu.Unlock()
	sw.resolve(op.Name, func(w *waiter) (waitResult, bool) {
		if w.uid != op.UID {
			return waitResult{}, false
		}
		// The last state seen may have satisfied the wait (an outcome
		// written just before an eviction); else the operation is gone.
		if w.done(op) {
			return waitResult{op: op.DeepCopy()}, true
		}
		return waitResult{err: &lifecycle.NotFoundError{ID: op.Name}}, true
	})
}

func (sw *sessionWatch) resolve(name string, decide func(*waiter) (waitResult, bool)) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	ws := sw.waiters[name]
	kept := ws[:0]
	for _, w := range ws {
		if res, ok := decide(w); ok {
			w.ch <- res
			continue
		}
		kept = append(kept, w)
	}
	if len(kept) == 0 {
		delete(sw.waiters, name)
	} else {
		sw.waiters[name] = kept
	}
}
