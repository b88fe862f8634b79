package admission

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// SetSessionStatus writes the plan's ledger, counts and conditions into
// sess. terminated says the termination was carried out for every
// operation. The conditions follow kstatus: Ready once the latest spec is
// processed, and Reconciling while a termination is still being carried out.
func SetSessionStatus(sess *opsv1.OpsSession, plan Plan, terminated bool, now time.Time) {
	st := &sess.Status
	st.ObservedGeneration = sess.Generation
	st.Admitted = plan.Ledger
	st.Active, st.Queued, st.Retained = int32(plan.Active), int32(plan.Queued), int32(plan.Finished)
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: sess.Generation, LastTransitionTime: metav1.NewTime(now),
		})
	}
	limit := "unlimited"
	if plan.Limit >= 0 {
		limit = fmt.Sprint(plan.Limit)
	}
	set(opsv1.ConditionReady, metav1.ConditionTrue, opsv1.ReasonReconciled,
		fmt.Sprintf("%s admission, maxConcurrent %s", Policy(sess), limit))
	set(opsv1.ConditionReconciling, metav1.ConditionFalse, opsv1.ReasonReconciled, "")
	set(opsv1.ConditionStalled, metav1.ConditionFalse, opsv1.ReasonReconciled, "")
	switch {
	case terminated:
		set(opsv1.ConditionTerminated, metav1.ConditionTrue, opsv1.ReasonTerminationRequested,
			"every non-terminal operation was terminated: "+TerminationReason(sess))
	case sess.Spec.Termination != nil:
		msg := "terminating operations: " + sess.Spec.Termination.Reason
		set(opsv1.ConditionTerminated, metav1.ConditionFalse, opsv1.ReasonTerminationRequested, msg)
		set(opsv1.ConditionReconciling, metav1.ConditionTrue, opsv1.ReasonTerminationRequested, msg)
	default:
		meta.RemoveStatusCondition(&st.Conditions, opsv1.ConditionTerminated)
	}
}

// Policy is the session's admission policy, Reject when unset.
func Policy(sess *opsv1.OpsSession) opsv1.AdmissionPolicy {
	if sess.Spec.AdmissionPolicy == "" {
		return opsv1.AdmissionReject
	}
	return sess.Spec.AdmissionPolicy
}

// TerminationReason is the reason recorded in the outcome of every
// operation the session terminates.
func TerminationReason(sess *opsv1.OpsSession) string {
	if sess.Spec.Termination != nil {
		return sess.Spec.Termination.Reason
	}
	return "session deleted"
}
