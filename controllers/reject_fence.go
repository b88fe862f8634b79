package controllers

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// maxRejectionsPerPass bounds the MaxConcurrentExceeded rejections one pass
// writes after its live count, so a burst of them is not written for
// seconds on a count the session has long left; the next pass counts again.
const maxRejectionsPerPass = 32

// fenceRepass is how soon a session runs again after its pass withheld
// rejections (over the cap, or not founded).
const fenceRepass = 20 * time.Millisecond

// fenceRejections lets a plan's MaxConcurrentExceeded rejections stand only
// if the API server confirms the session is full (admission.Fence): it
// counts the session's active operations with a quorum LIST, after the plan
// was made and before anything is written. When the cached view already
// shows a slot free, the rejections are withheld without asking. A plan with
// no such rejection, the normal flow, costs nothing. repass says the session
// must run again soon.
func (r *OpsSessionReconciler) fenceRejections(ctx context.Context, sess *opsv1.OpsSession, plan admission.Plan, ops []*opsv1.Operation) (fenced admission.Plan, repass bool, err error) {
	if !admission.RejectsOverLimit(plan) {
		return plan, false, nil
	}
	// The cached view, with this process's own writes, is what the plan
	// counted on; if even it shows a slot free (the ledger holds it, or a
	// finished operation still in the ledger), no live count can confirm.
	active := admission.Active(ops)
	if active >= plan.Limit && plan.Limit > 0 {
		if active, err = r.activeLive(ctx, sess, plan.Limit); err != nil {
			return plan, false, err
		}
	}
	fenced, withheld := admission.Fence(plan, active, maxRejectionsPerPass)
	return fenced, withheld > 0, nil
}

// notActive are the phases the live count leaves out: every phase but
// Provisioning, Running and Retiring, and no phase at all (Pending).
var notActive = func() []string {
	out := []string{""}
	for _, p := range lifecycle.Phases {
		if !lifecycle.IsActive(p) {
			out = append(out, string(p))
		}
	}
	return out
}()

// activeLive counts, around the cache, the session's active operations, as
// one quorum LIST returns them, and stops counting at limit: pages of object
// metadata only, filtered by the API server on the selectable fields
// spec.sessionName and status.phase.
func (r *OpsSessionReconciler) activeLive(ctx context.Context, sess *opsv1.OpsSession, limit int) (int, error) {
	sel := make([]fields.Selector, 0, 1+len(notActive))
	sel = append(sel, fields.OneTermEqualSelector(SessionNameField, sess.Name))
	for _, p := range notActive {
		sel = append(sel, fields.OneTermNotEqualSelector("status.phase", p))
	}
	n, next := 0, ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(opsv1.GroupVersion.WithKind("OperationList"))
		if err := r.APIReader.List(ctx, list, client.InNamespace(sess.Namespace),
			client.MatchingFieldsSelector{Selector: fields.AndSelectors(sel...)},
			client.Limit(int64(limit-n)), client.Continue(next)); err != nil {
			return 0, err
		}
		n += len(list.Items)
		// A next page continues the same snapshot.
		if next = list.Continue; n >= limit || next == "" {
			return n, nil
		}
	}
}
