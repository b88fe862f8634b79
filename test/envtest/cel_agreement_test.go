package envtest

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// pathTo is a legal sequence of phases from a new Operation to each phase.
var pathTo = map[opsv1.OperationPhase][]opsv1.OperationPhase{
	opsv1.PhasePending:      {opsv1.PhasePending},
	opsv1.PhaseProvisioning: {opsv1.PhaseProvisioning},
	opsv1.PhaseRunning:      {opsv1.PhaseProvisioning, opsv1.PhaseRunning},
	opsv1.PhaseRetiring:     {opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseRetiring},
	opsv1.PhaseCompleted:    {opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseCompleted},
	opsv1.PhaseFailed:       {opsv1.PhaseProvisioning, opsv1.PhaseFailed},
	opsv1.PhaseAborted:      {opsv1.PhaseProvisioning, opsv1.PhaseAborted},
	opsv1.PhaseCancelled:    {opsv1.PhaseProvisioning, opsv1.PhaseCancelled},
	opsv1.PhaseRetired:      {opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseRetired},
	opsv1.PhaseTerminated:   {opsv1.PhaseProvisioning, opsv1.PhaseTerminated},
	opsv1.PhaseRejected:     {opsv1.PhaseRejected},
}

// statusFor is a well-formed status in phase p: the outcome it needs, and
// conditions already right, so the controller has nothing to add.
func statusFor(op *opsv1.Operation, p opsv1.OperationPhase) opsv1.OperationStatus {
	next := op.DeepCopy()
	next.Status.Phase = p
	next.Status.Outcome = nil
	if lifecycle.IsTerminal(p) {
		o := &opsv1.TerminalOutcome{Type: p}
		switch p {
		case opsv1.PhaseCompleted:
			o.Result = &opsv1.OperationResult{Content: "ok"}
		case opsv1.PhaseFailed:
			o.Error = "boom"
		case opsv1.PhaseTerminated:
			o.Reason = ptr.To("shutdown")
		}
		next.Status.Outcome = o
	}
	if p == opsv1.PhaseRejected {
		next.Status.Rejection = &opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}
	}
	lifecycle.SetConditions(next, metav1.Now().Time)
	return next.Status
}

// writePhase writes status in phase p, retrying conflicts with the
// controller's condition writes.
func writePhase(ctx context.Context, op *opsv1.Operation, p opsv1.OperationPhase) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := controllerIdentity.Get(ctx, objKey(op), op); err != nil {
			return err
		}
		if lifecycle.IsFinal(op.Status.Phase) && op.Status.Phase == p {
			return controllerIdentity.Status().Update(ctx, op) // same terminal status again
		}
		op.Status = statusFor(op, p)
		return controllerIdentity.Status().Update(ctx, op)
	})
}

// TestCELAgreesWithTransitionTable walks every (from, to) pair of phases
// against the real API server: what the CRD's CEL rules accept must be
// exactly what lifecycle.PhaseChangeAllowed allows, and every refusal must
// name both phases.
func TestCELAgreesWithTransitionTable(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	n := 0
	for _, from := range lifecycle.Phases {
		for _, to := range lifecycle.Phases {
			n++
			op := &opsv1.Operation{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pair-%03d", n), Namespace: ns},
				// No such session: the controller leaves the phase alone.
				Spec: opsv1.OperationSpec{SessionName: "no-session", Kind: opsv1.MobMemberChild},
			}
			if err := k8s.Create(ctx, op); err != nil {
				t.Fatal(err)
			}
			for _, step := range pathTo[from] {
				if err := writePhase(ctx, op, step); err != nil {
					t.Fatalf("walking to %s: writing %s: %v", from, step, err)
				}
			}
			err := writePhase(ctx, op, to)
			allowed := lifecycle.PhaseChangeAllowed(from, to)
			switch {
			case allowed && err != nil:
				t.Errorf("%s -> %s: the table allows it, the API server refused: %v", from, to, err)
			case !allowed && err == nil:
				t.Errorf("%s -> %s: the table forbids it, the API server accepted it", from, to)
			case !allowed && !apierrors.IsInvalid(err):
				t.Errorf("%s -> %s: want an Invalid error, got %v", from, to, err)
			case !allowed && !containsAll(err.Error(), fmt.Sprintf("%s -> %s", from, to)):
				t.Errorf("%s -> %s: message does not name both phases: %v", from, to, err)
			}
		}
	}
	t.Logf("checked %d (from, to) pairs", n)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !contains(s, sub) {
			return false
		}
	}
	return true
}
