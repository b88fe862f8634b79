package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// OperationReconciler carries out users' control requests (cancel, retire,
// abort) and deadlines, and keeps an Operation's conditions true to its phase
// when someone wrote status without them.
type OperationReconciler struct {
	client.Client
	// APIReader reads a finished operation whole: the cache trims it.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	Metrics   *Metrics
}

// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=operations,verbs=get;list;watch
// +kubebuilder:rbac:groups=ops.meerkat.dev,resources=operations/status,verbs=get;update;patch

// Reconcile runs one get → decide → write pass for an operation.
func (r *OperationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	op := &opsv1.Operation{}
	if err := r.Get(ctx, req.NamespacedName, op); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Values the Go types cannot decode were dropped or read leniently while
	// decoding; say so once. The pass goes on without them.
	reportMalformedOperation(ctx, r.Recorder, op)
	if lifecycle.IsFinal(op.Status.Phase) {
		// Nothing else changes a finished operation; only its conditions,
		// when its writer left them stale.
		if op.Annotations[CachedConditionsStale] == "" {
			return ctrl.Result{}, nil
		}
		w := &writer{c: r.Client, rec: r.Recorder, now: r.Clock.Now(), metrics: r.Metrics}
		return r.fixFinalConditions(ctx, req.NamespacedName, w)
	}
	sess := &opsv1.OpsSession{}
	err := r.Get(ctx, types.NamespacedName{Namespace: op.Namespace, Name: op.Spec.SessionName}, sess)
	if apierrors.IsNotFound(err) {
		sess = nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	w := &writer{c: r.Client, rec: r.Recorder, now: now, metrics: r.Metrics}

	next := lifecycle.NextControl(op, sess, now)
	switch do := next.Do; {
	case do != nil:
		if done := w.apply(ctx, op, do.Call, do.Args); done != nil {
			typ := corev1.EventTypeNormal
			if do.Call == lifecycle.FailOperation {
				typ = corev1.EventTypeWarning
			}
			w.event(done, typ, do.Reason, "%s", describe(do))
		}
	case sess == nil && lifecycle.Normalize(op.Status.Phase) == opsv1.PhasePending:
		// Waits for its session; the session's creation queues it again.
		fixed := op.DeepCopy()
		if lifecycle.SetSessionMissing(fixed, now) {
			w.update(ctx, fixed)
		}
	case op.Status.Phase != "":
		// Somebody wrote status without conditions (kubectl, an old client),
		// or the spec changed: bring conditions and observedGeneration up to date.
		fixed := op.DeepCopy()
		if lifecycle.SetConditions(fixed, now) {
			w.update(ctx, fixed)
		}
	}
	if w.refused != nil {
		return ctrl.Result{}, w.refused
	}
	if w.failed {
		return ctrl.Result{RequeueAfter: conflictBackoff}, nil
	}
	return ctrl.Result{RequeueAfter: next.After}, nil
}

func describe(c *lifecycle.Action) string {
	switch c.Call {
	case lifecycle.FailOperation:
		return c.Args.Error
	case lifecycle.RequestRetire:
		return "retire requested in spec.retire"
	}
	msg := c.Call.Action() + " requested in spec"
	if c.Args.Reason != nil && *c.Args.Reason != "" {
		msg += ": " + *c.Args.Reason
	}
	return msg
}

// SetupWithManager registers the controller.
func (r *OperationReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	toOperations := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []ctrl.Request {
		var list opsv1.OperationList
		// Read-only: no deep copies of a session's (possibly many) operations.
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{SessionNameField: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		reqs := make([]ctrl.Request, 0, len(list.Items))
		for i := range list.Items {
			if !lifecycle.IsFinal(list.Items[i].Status.Phase) {
				reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		// A finished operation is queued only to report values it holds
		// that the Go types cannot decode.
		For(&opsv1.Operation{}, builder.WithPredicates(r.Metrics.observeTransitions(), predicate.Or(unfinished(), malformedOperation()))).
		Watches(&opsv1.OpsSession{}, toOperations, builder.WithPredicates(sessionCreatedOrSpecChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Named("operation").
		Complete(r)
}
