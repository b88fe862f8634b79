package plugin

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

func opIn(phase opsv1.OperationPhase) *opsv1.Operation {
	return &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "op"}, Status: opsv1.OperationStatus{Phase: phase}}
}

// Every request in every phase: written exactly when the lifecycle table
// allows it, refused with the phase named otherwise.
func TestDecideRequestFollowsLifecycle(t *testing.T) {
	for _, r := range requests {
		for _, phase := range lifecycle.Phases {
			already, err := decideRequest(opIn(phase), r, nil)
			allowed := lifecycle.Allowed(r.call, phase)
			switch {
			case already:
				t.Errorf("%s from %s: already, with no request in place", r.verb, phase)
			case allowed && err != nil:
				t.Errorf("%s from %s: refused, the lifecycle allows it: %v", r.verb, phase, err)
			case !allowed && err == nil:
				t.Errorf("%s from %s: accepted, the lifecycle forbids it", r.verb, phase)
			case !allowed && !strings.Contains(err.Error(), "it is "+string(phase)) && !strings.Contains(err.Error(), "already "+string(phase)):
				t.Errorf("%s from %s: message does not name the phase: %v", r.verb, phase, err)
			}
		}
	}
}

func TestDecideRequestWriteOnce(t *testing.T) {
	op := opIn(opsv1.PhaseRunning)
	op.Spec.Cancel = &opsv1.ControlRequest{Reason: ptr.To("first")}
	if already, err := decideRequest(op, cancelRequest, ptr.To("first")); !already || err != nil {
		t.Errorf("same request again: already=%v err=%v, want already", already, err)
	}
	_, err := decideRequest(op, cancelRequest, ptr.To("second"))
	if err == nil || err.Error() != `cannot cancel operation op: cancel was already requested with reason "first"; requests are write-once` {
		t.Errorf("another reason: %v", err)
	}
	if _, err := decideRequest(op, cancelRequest, nil); err == nil {
		t.Error("no reason after a reason: accepted")
	}

	// A retire carried out: Retiring, spec.retire in place.
	op = opIn(opsv1.PhaseRetiring)
	op.Spec.Retire = &opsv1.ControlRequest{}
	if already, err := decideRequest(op, retireRequest, nil); !already || err != nil {
		t.Errorf("retire of a retiring operation with the same request: already=%v err=%v", already, err)
	}
	// A retire stored on a Provisioning operation (kubectl patch) never
	// happens: asking again is refused, not reported as in place.
	op = opIn(opsv1.PhaseProvisioning)
	op.Spec.Retire = &opsv1.ControlRequest{}
	if _, err := decideRequest(op, retireRequest, nil); err == nil {
		t.Error("retire of a Provisioning operation: accepted")
	}
	// Final operations: refused even with the same request in place.
	op = opIn(opsv1.PhaseCancelled)
	op.Spec.Cancel = &opsv1.ControlRequest{}
	if _, err := decideRequest(op, cancelRequest, nil); err == nil || !strings.Contains(err.Error(), "already Cancelled") {
		t.Errorf("cancel of a cancelled operation: %v", err)
	}
}
