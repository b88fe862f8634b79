package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

// SessionNameField indexes Operations by spec.sessionName.
const SessionNameField = "spec.sessionName"

// DefaultCountsInterval bounds how often a session's status is written when
// only its counts changed, and how often each digest event (Queued,
// Terminated) is sent, so a busy session costs a few summarising writes per
// interval rather than one per operation transition. After a quiet spell the
// first change is written at once.
const DefaultCountsInterval = 10 * time.Second

// OpsSessionReconciler admits, rejects, queues and terminates a session's
// operations, and evicts the oldest finished ones.
type OpsSessionReconciler struct {
	client.Client
	// APIReader reads around the cache, to confirm an admitted operation is
	// really gone before its ledger slot is freed.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	// CountsInterval: see DefaultCountsInterval.
	CountsInterval time.Duration
	Metrics        *Metrics

	throttle throttle
	digest   digest
	own      ownWrites
}

// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=opssessions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=opssessions/status,verbs=get;update;patch;control
// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=opssessions/finalizers,verbs=update
// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=operations,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=operations/status,verbs=get;update;patch;control
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// The custom verb `control` is what config/policy's admission policy asks
// for before an admission, a rejection, a termination or a session status
// write: the manager's role is the only shipped role that grants it. Leader
// election uses a namespaced Role (config/rbac/leader_election_role.yaml).

// Reconcile runs one get → observe → decide → write pass for a session.
func (r *OpsSessionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sess := &opsv1.OpsSession{}
	if err := r.Get(ctx, req.NamespacedName, sess); err != nil {
		r.throttle.forget(req.NamespacedName)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	reportMalformedSession(ctx, r.Recorder, sess) // undecodable default timeouts: logged and sent as an event once
	deleting := !sess.DeletionTimestamp.IsZero()
	if !deleting {
		if err := r.ensureFinalizer(ctx, sess); err != nil {
			return requeueOnConflict(err)
		}
	}

	now := r.Clock.Now()
	ops, plan, repass, err := r.decide(ctx, sess, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	w := &writer{c: r.Client, rec: r.Recorder, now: now, metrics: r.Metrics, own: &r.own}

	// The ledger is the fence: it must be stored, with optimistic locking,
	// before any operation is marked admitted. A stale cache or a second
	// controller fails here with a conflict instead of over-admitting.
	ledgerFirst := len(plan.Admit) > 0 && plan.LedgerChanged
	if ledgerFirst {
		if err := r.writeStatus(ctx, sess, plan, false, now); err != nil {
			return requeueOnConflict(err)
		}
	}
	reason := admission.TerminationReason(sess)
	applyPlan(ctx, w, sess, plan, ops, reason)
	digestDue := r.emitDigests(sess, w.batch, map[string]string{
		opsv1.EventReasonTerminated: " (" + reason + ")",
		opsv1.EventReasonQueued:     fmt.Sprintf(" (maxConcurrent %d)", plan.Limit),
	}, now)

	if w.refused != nil {
		// The API server will refuse that write again: back off through the
		// workqueue's rate limiter instead of looping.
		return ctrl.Result{}, w.refused
	}
	if deleting {
		return r.finishDeletion(ctx, sess, ops, w.failed)
	}
	terminated := sess.Spec.Termination != nil && !w.failed
	res := ctrl.Result{RequeueAfter: requeueAfter(digestDue, w.failed, repass)}
	if ledgerFirst {
		return res, nil // the status was written above
	}
	return r.writeStatusIfDue(ctx, sess, plan, terminated, now, res)
}

// ensureFinalizer adds the finalizer to a session that lacks it.
func (r *OpsSessionReconciler) ensureFinalizer(ctx context.Context, sess *opsv1.OpsSession) error {
	if controllerutil.ContainsFinalizer(sess, opsv1.FinalizerTerminate) {
		return nil
	}
	return r.patchFinalizers(ctx, sess, controllerutil.AddFinalizer)
}

// decide observes the session's operations (from the cache, and around it
// for the ledger entries the cache does not hold) and plans what to do with
// them. repass reports rejections the fence withheld for another pass.
func (r *OpsSessionReconciler) decide(ctx context.Context, sess *opsv1.OpsSession, now time.Time) (ops []*opsv1.Operation, plan admission.Plan, repass bool, err error) {
	ops, err = r.operations(ctx, sess, now)
	if err != nil {
		return nil, plan, false, err
	}
	gone, err := r.confirmGone(ctx, sess, ops)
	if err != nil {
		return nil, plan, false, err
	}
	terminationDone := meta.IsStatusConditionTrue(sess.Status.Conditions, opsv1.ConditionTerminated)
	plan = admission.Decide(admission.Input{Session: sess, Ops: ops, Gone: gone, TerminationDone: terminationDone})
	// Rejections are final: a plan that rejects is decided again on a live
	// view, as an admission is fenced by the ledger (see reject_fence.go).
	plan, repass, err = r.fenceRejections(ctx, sess, plan, ops)
	if err != nil {
		return nil, plan, false, err
	}
	return ops, plan, repass, nil
}

// applyPlan writes the plan's outcomes to the operations, through w:
// admissions, rejections, terminations (for reason) and queueing, then
// retention's evictions.
func applyPlan(ctx context.Context, w *writer, sess *opsv1.OpsSession, plan admission.Plan, ops []*opsv1.Operation, reason string) {
	// Admissions and evictions are the steady flow: they are counted in
	// metrics and in the session's counts, not sent as events.
	for _, op := range plan.Admit {
		w.apply(ctx, op, lifecycle.Admit, lifecycle.Args{})
	}
	for _, rj := range plan.Reject {
		rej := rj.Rejection
		if done := w.apply(ctx, rj.Op, lifecycle.Reject, lifecycle.Args{Rejection: &rej}); done != nil {
			w.event(done, corev1.EventTypeWarning, opsv1.EventReasonRejected, "%s", lifecycle.RejectionMessage(done))
		}
	}
	for _, op := range plan.Terminate {
		if w.apply(ctx, op, lifecycle.TerminateOwner, lifecycle.Args{Reason: &reason}) != nil {
			w.note(opsv1.EventReasonTerminated, op.Name)
		}
	}
	for _, op := range plan.Queue {
		w.queue(ctx, op, plan.Limit)
	}
	// Retention runs after every outcome above is stored.
	for _, op := range retention.Evict(ops, sess.Spec.MaxCompleted) {
		w.evict(ctx, op)
	}
}

// requeueAfter is when to look at the session again, its status write
// aside: when the next digest is due, soon after a failed write, sooner
// still when the fence withheld rejections.
func requeueAfter(digestDue time.Duration, failed, repass bool) time.Duration {
	after := digestDue
	if failed {
		// A conflict means the cache was behind; the watch event that moves
		// it forward queues this session again, but do not rely on it alone.
		after = conflictBackoff
	}
	if repass && (after == 0 || fenceRepass < after) {
		after = fenceRepass // rejections were withheld
	}
	return after
}

// writeStatusIfDue writes the session's status if it is due now, or else
// requeues res no later than when it will be.
func (r *OpsSessionReconciler) writeStatusIfDue(ctx context.Context, sess *opsv1.OpsSession, plan admission.Plan, terminated bool, now time.Time, res ctrl.Result) (ctrl.Result, error) {
	switch due := r.statusDue(sess, plan, terminated, now); {
	case due == 0:
		if err := r.writeStatus(ctx, sess, plan, terminated, now); err != nil {
			return requeueOnConflict(err)
		}
	case due > 0 && (res.RequeueAfter == 0 || due < res.RequeueAfter):
		res.RequeueAfter = due
	}
	return res, nil
}

// finishDeletion lets a deleted session go once every operation is
// terminated: it deletes the operations owner references do not cover, then
// removes the finalizer.
func (r *OpsSessionReconciler) finishDeletion(ctx context.Context, sess *opsv1.OpsSession, ops []*opsv1.Operation, failed bool) (ctrl.Result, error) {
	if failed {
		return ctrl.Result{RequeueAfter: conflictBackoff}, nil
	}
	if err := r.deleteUnowned(ctx, sess, ops); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.patchFinalizers(ctx, sess, controllerutil.RemoveFinalizer); client.IgnoreNotFound(err) != nil {
		return requeueOnConflict(err)
	}
	return ctrl.Result{}, nil
}

// patchFinalizers adds or removes the finalizer with a merge patch that
// carries only metadata.finalizers and the resourceVersion (the optimistic
// lock): a full Update would re-serialise the spec (10m as 10m0s) and so
// change the limits in the eyes of the admission policy and of server-side
// apply field managers.
func (r *OpsSessionReconciler) patchFinalizers(ctx context.Context, sess *opsv1.OpsSession, change func(client.Object, string) bool) error {
	orig := sess.DeepCopy()
	if !change(sess, opsv1.FinalizerTerminate) {
		return nil
	}
	return r.Patch(ctx, sess, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// operations lists the session's operations from the cache, as amended by
// this process's own writes that the cache has not seen yet.
func (r *OpsSessionReconciler) operations(ctx context.Context, sess *opsv1.OpsSession, now time.Time) ([]*opsv1.Operation, error) {
	var list opsv1.OperationList
	// No deep copies: this list is read-only here (every write copies
	// first), and a session can hold tens of thousands of operations.
	if err := r.List(ctx, &list, client.InNamespace(sess.Namespace), client.MatchingFields{SessionNameField: sess.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	ops := make([]*opsv1.Operation, 0, len(list.Items))
	for i := range list.Items {
		if op, ok := r.own.view(&list.Items[i], now); ok {
			ops = append(ops, op)
		}
	}
	return ops, nil
}

// confirmGone reads, around the cache, every ledger entry the cache does not
// hold (or holds under another UID), and returns those the API server
// confirms are gone.
func (r *OpsSessionReconciler) confirmGone(ctx context.Context, sess *opsv1.OpsSession, ops []*opsv1.Operation) (map[string]bool, error) {
	cached := make(map[string]string, len(ops))
	for _, op := range ops {
		cached[op.Name] = string(op.UID)
	}
	gone := map[string]bool{}
	for _, e := range sess.Status.Admitted {
		if cached[e.Name] == e.UID {
			continue
		}
		live := &opsv1.Operation{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: sess.Namespace, Name: e.Name}, live)
		switch {
		case apierrors.IsNotFound(err):
			gone[e.Name] = true
		case err != nil:
			return nil, err
		case string(live.UID) != e.UID || lifecycle.IsFinal(live.Status.Phase):
			gone[e.Name] = true
		}
	}
	return gone, nil
}

func (r *OpsSessionReconciler) writeStatus(ctx context.Context, sess *opsv1.OpsSession, plan admission.Plan, terminated bool, now time.Time) error {
	wasTerminated := meta.IsStatusConditionTrue(sess.Status.Conditions, opsv1.ConditionTerminated)
	admission.SetSessionStatus(sess, plan, terminated, now)
	// Update carries the cached resourceVersion: this is the optimistic lock.
	if err := r.Status().Update(ctx, sess); err != nil {
		return err
	}
	r.throttle.mark(client.ObjectKeyFromObject(sess).String()+"/counts", now)
	if terminated && !wasTerminated && r.Recorder != nil {
		r.Recorder.Eventf(sess, nil, corev1.EventTypeNormal, opsv1.EventReasonTerminated, "Terminate", "session terminated: %s", admission.TerminationReason(sess))
	}
	return nil
}

func (r *OpsSessionReconciler) deleteUnowned(ctx context.Context, sess *opsv1.OpsSession, ops []*opsv1.Operation) error {
	for _, op := range ops {
		if metav1.IsControlledBy(op, sess) {
			continue // owner references cascade
		}
		if err := r.Delete(ctx, op, client.Preconditions{UID: &op.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// SetupWithManager registers the controller and its field index.
func (r *OpsSessionReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.CountsInterval == 0 {
		r.CountsInterval = DefaultCountsInterval
	}
	toSession := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
		op, ok := o.(*opsv1.Operation)
		if !ok {
			return nil
		}
		return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: op.Namespace, Name: op.Spec.SessionName}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&opsv1.OpsSession{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&opsv1.Operation{}, toSession, builder.WithPredicates(operationPhaseChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Named("opssession").
		Complete(r)
}
