package opsclient

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/objwatch"
)

// TerminateOwner terminates every non-terminal operation of the session
// (spec.termination on the OpsSession) and returns once the controller has
// carried it out. Asking again, with any reason, returns at once when that
// is already done (the first reason stays: termination is write-once), as
// Meerkat's terminate_owner never fails.
func (r *Registry) TerminateOwner(ctx context.Context, reason string) error {
	// The operations' last progress reports first: the terminations are
	// the controller's writes, which cannot carry them.
	_ = r.Flush(ctx)
	s := &opsv1.OpsSession{}
	key := types.NamespacedName{Namespace: r.rt.ns, Name: r.session}
	if err := r.rt.c.Get(ctx, key, s); err != nil {
		return err
	}
	if s.Spec.Termination == nil {
		patch := client.MergeFrom(s.DeepCopy())
		s.Spec.Termination = &opsv1.Termination{Reason: reason}
		if err := r.rt.c.Patch(ctx, s, patch); err != nil {
			return err
		}
	}
	gen := s.Generation
	terminated := func(o client.Object) bool {
		c := meta.FindStatusCondition(o.(*opsv1.OpsSession).Status.Conditions, opsv1.ConditionTerminated)
		return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration >= gen
	}
	if terminated(s) {
		return nil
	}
	return objwatch.Until(ctx, r.rt.c, r.rt.ns, r.session, &opsv1.OpsSession{}, &opsv1.OpsSessionList{}, terminated)
}
