package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// CachedConditionsStale is an annotation that exists only in the manager's
// cache, never on the API server: the cache transform sets it on a finished
// Operation whose stored conditions are not true to its phase (a raw status
// write by kubectl or an agent in another language), before it trims the
// conditions away. It lets such an operation, and only such, through to the
// Operation reconciler, so the normal flow, where the writer set the
// conditions right, costs no read and no write.
const CachedConditionsStale = "ops.meerkat.dev/cached-conditions-stale"

// fixFinalConditions brings a finished operation's conditions in line with
// its phase and outcome. The cache holds a trimmed copy, so it reads the
// stored object around the cache and writes it back with its resourceVersion.
func (r *OperationReconciler) fixFinalConditions(ctx context.Context, key client.ObjectKey, w *writer) (ctrl.Result, error) {
	live := &opsv1.Operation{}
	if err := r.APIReader.Get(ctx, key, live); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if lifecycle.SetConditions(live, w.now) {
		w.update(ctx, live)
	}
	switch {
	case w.refused != nil:
		return ctrl.Result{}, w.refused
	case w.failed:
		return ctrl.Result{RequeueAfter: conflictBackoff}, nil
	}
	return ctrl.Result{}, nil
}
