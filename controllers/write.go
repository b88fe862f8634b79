package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// conflictBackoff is how soon a pass that lost an optimistic-lock race runs
// again; by then the informer has usually caught up. Only conflicts get it:
// any other refusal goes back to the workqueue's exponential backoff.
const conflictBackoff = 20 * time.Millisecond

func requeueOnConflict(err error) (ctrl.Result, error) {
	switch {
	case apierrors.IsConflict(err):
		return ctrl.Result{RequeueAfter: conflictBackoff}, nil
	case errors.Is(err, context.Canceled):
		return ctrl.Result{}, nil // shutting down
	}
	return ctrl.Result{}, err
}

// writer sends one status write per operation and emits each event only
// after its write succeeded. failed records a write lost to a conflict;
// refused the first write the API server refused for another reason.
//
// Admissions and evictions, the steady flow, send no events: an event is an
// API write too, and one per operation would cost two extra writes per
// lifecycle. They are counted in metrics and in the session's counts. Queued
// and Terminated operations are gathered into one digest event per reason on
// the session, at most one per CountsInterval. Exceptions (Rejected,
// TimedOut, control requests) go on the operation itself, at once.
type writer struct {
	c       client.Client
	rec     recorder.EventRecorder
	now     time.Time
	metrics *Metrics
	// own, when set, records each successful write and delete.
	own    *ownWrites
	failed bool
	// refused, when set, is returned from Reconcile so the workqueue backs
	// off exponentially: the API server will refuse the same write again.
	refused error
	// batch: operations per normal-flow reason, for the session's digest.
	batch map[string][]string
}

// apply makes a lifecycle call on a copy of op and writes it with op's
// resourceVersion. A call no longer allowed (the operation moved on) is
// skipped. It returns the written operation, or nil.
func (w *writer) apply(ctx context.Context, op *opsv1.Operation, c lifecycle.Call, a lifecycle.Args) *opsv1.Operation {
	next := op.DeepCopy()
	if err := lifecycle.Apply(next, c, a, w.now); err != nil {
		return nil
	}
	if !w.update(ctx, next) {
		return nil
	}
	w.metrics.transition(next, c)
	return next
}

// queue records on a Pending operation that it waits for a slot.
func (w *writer) queue(ctx context.Context, op *opsv1.Operation, limit int) {
	next := op.DeepCopy()
	if lifecycle.SetQueued(next, limit, w.now) && w.update(ctx, next) {
		w.note(opsv1.EventReasonQueued, op.Name)
	}
}

// note adds an operation to the session-level event of reason.
func (w *writer) note(reason, name string) {
	if w.batch == nil {
		w.batch = map[string][]string{}
	}
	w.batch[reason] = append(w.batch[reason], name)
}

// evict deletes a finished operation, only if it is still the object that
// was planned on: UID and resourceVersion preconditions.
func (w *writer) evict(ctx context.Context, op *opsv1.Operation) {
	err := w.c.Delete(ctx, op, client.Preconditions{UID: &op.UID, ResourceVersion: &op.ResourceVersion})
	switch {
	case apierrors.IsNotFound(err):
		// collected by an agent, or evicted by another controller
	case apierrors.IsConflict(err):
		w.failed = true
	case err != nil:
		w.refuse(op, "evicting", err)
	default:
		w.own.record(op.UID, op.ResourceVersion, nil, w.now)
		w.metrics.evicted(op)
	}
}

func (w *writer) update(ctx context.Context, op *opsv1.Operation) bool {
	from := op.ResourceVersion
	err := w.c.Status().Update(ctx, op)
	switch {
	case err == nil:
		w.own.record(op.UID, from, op, w.now)
		return true
	case apierrors.IsNotFound(err):
	case apierrors.IsConflict(err), ctx.Err() != nil:
		w.failed = true
	default:
		w.refuse(op, "writing the status of", err)
	}
	return false
}

// refuse records a write the API server refused for a reason other than a
// conflict, and says so on the object with the API server's message.
func (w *writer) refuse(op *opsv1.Operation, doing string, err error) {
	if w.refused == nil {
		w.refused = fmt.Errorf("%s operation %s: %w", doing, op.Name, err)
	}
	w.event(op, corev1.EventTypeWarning, opsv1.EventReasonWriteRefused, "%s", opsv1.Truncate(err.Error(), maxNote))
}

// maxNote is the most bytes an event's note may hold.
const maxNote = 1024

func (w *writer) event(obj client.Object, typ, reason, format string, args ...any) {
	if w.rec == nil {
		return
	}
	w.rec.Eventf(obj, nil, typ, reason, reason, format, args...)
}
