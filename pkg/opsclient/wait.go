package opsclient

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// startWatch starts, once, the registry's shared watch of its session's
// operations, and returns it.
//
// The watch serves every wait of the registry, so it lives as long as the
// Runtime (Close stops it), not as long as the ctx of the call that happens
// to start it: it keeps that ctx's values (such as its logger, for the
// informer's own logging) but not its cancellation or deadline, which would
// otherwise end the watch under every later caller.
func (r *Registry) startWatch(ctx context.Context) *sessionWatch {
	r.watchOnce.Do(func() {
		wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		context.AfterFunc(r.rt.ctx, stop)
		r.watch = newSessionWatch(r.rt.c, r.rt.ns, r.session)
		r.watch.start(wctx)
	})
	return r.watch
}

// sessionWatch returns the registry's shared watch (startWatch) once it has
// synced. The caller's ctx bounds only the caller's own wait for the sync:
// a caller whose ctx ends first gets ctx's error and leaves the watch
// syncing for the callers after it.
func (r *Registry) sessionWatch(ctx context.Context) (*sessionWatch, error) {
	sw := r.startWatch(ctx)
	if err := sw.ready(ctx); err != nil {
		return nil, err
	}
	return sw, nil
}

// Watcher is a one-shot watcher of one operation's terminal outcome.
type Watcher struct {
	done    chan struct{}
	outcome Outcome
	err     error
}

// Wait returns the terminal outcome once the operation is terminal, NotFound
// if it was removed first, or ctx's error.
func (w *Watcher) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-w.done:
		return w.outcome, w.err
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// RegisterWatcher returns a watcher of the operation's terminal outcome. On
// an operation already terminal it resolves at once with the stored
// outcome; on an unknown or evicted one it gives NotFound. The watcher
// watches until ctx ends.
func (r *Registry) RegisterWatcher(ctx context.Context, id string) (*Watcher, error) {
	op, err := r.get(ctx, id)
	if err != nil {
		return nil, err
	}
	w := &Watcher{done: make(chan struct{})}
	if o := op.Status.Outcome; o != nil {
		w.outcome = *o
		close(w.done)
		return w, nil
	}
	r.mu.Lock()
	r.watchers[id]++
	r.mu.Unlock()
	go func() {
		final, err := r.waitFor(ctx, id, op.UID, func(o *opsv1.Operation) bool { return o.Status.Outcome != nil })
		if err == nil {
			w.outcome = *final.Status.Outcome
		}
		w.err = err
		r.mu.Lock()
		if r.watchers[id]--; r.watchers[id] <= 0 {
			delete(r.watchers, id)
		}
		r.mu.Unlock()
		close(w.done)
	}()
	return w, nil
}

// WaitAll waits for every operation and returns the outcomes in the order
// of ids. An unknown id gives NotFound and a repeated one
// DuplicateWaitOperation, before any waiting.
func (r *Registry) WaitAll(ctx context.Context, runID string, ids []string) (*WaitAllResult, error) {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return nil, &lifecycle.DuplicateWaitOperationError{ID: id}
		}
		seen[id] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchers := make([]*Watcher, len(ids))
	for i, id := range ids {
		w, err := r.RegisterWatcher(ctx, id)
		if err != nil {
			return nil, err
		}
		watchers[i] = w
	}
	res := &WaitAllResult{Satisfied: WaitSatisfied{
		RunID: runID, WaitRequestID: string(uuid.NewUUID()), OperationIDs: slices.Clone(ids),
	}}
	for i, w := range watchers {
		o, err := w.Wait(ctx)
		if err != nil {
			return nil, err
		}
		res.Outcomes = append(res.Outcomes, OperationOutcome{ID: ids[i], Outcome: o})
	}
	return res, nil
}

// waitFor waits, on the session's shared watch, until the operation with
// this UID satisfies done; a deletion first gives NotFound.
func (r *Registry) waitFor(ctx context.Context, id string, uid types.UID, done func(*opsv1.Operation) bool) (*opsv1.Operation, error) {
	sw, err := r.sessionWatch(ctx)
	if err != nil {
		return nil, err
	}
	return sw.await(ctx, id, sw.wait(id, uid, done))
}
