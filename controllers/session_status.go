package controllers

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
)

// setSessionStatus writes the plan's ledger, counts and conditions into sess.
func setSessionStatus(sess *opsv1.OpsSession, plan admission.Plan, terminated bool, now time.Time) {
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
		fmt.Sprintf("%s admission, maxConcurrent %s", policy(sess), limit))
	set(opsv1.ConditionReconciling, metav1.ConditionFalse, opsv1.ReasonReconciled, "")
	set(opsv1.ConditionStalled, metav1.ConditionFalse, opsv1.ReasonReconciled, "")
	switch {
	case terminated:
		set(opsv1.ConditionTerminated, metav1.ConditionTrue, opsv1.ReasonTerminationRequested,
			"every non-terminal operation was terminated: "+terminationReason(sess))
	case sess.Spec.Termination != nil:
		set(opsv1.ConditionTerminated, metav1.ConditionFalse, opsv1.ReasonTerminationRequested,
			"terminating operations: "+sess.Spec.Termination.Reason)
	default:
		meta.RemoveStatusCondition(&st.Conditions, opsv1.ConditionTerminated)
	}
}

func policy(sess *opsv1.OpsSession) opsv1.AdmissionPolicy {
	if sess.Spec.AdmissionPolicy == "" {
		return opsv1.AdmissionReject
	}
	return sess.Spec.AdmissionPolicy
}

func equalStatus(a, b opsv1.OpsSessionStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

func equalConditions(a, b []metav1.Condition) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// ledgerOnlyShrank reports whether next holds only entries of cur.
func ledgerOnlyShrank(cur, next []opsv1.LedgerEntry) bool {
	for _, e := range next {
		if !slices.Contains(cur, e) {
			return false
		}
	}
	return true
}

// countsMemo remembers when this process last wrote each session's status,
// to rate-limit writes that only refresh counts. Losing it on restart costs
// one early write, nothing more.
type countsMemo struct {
	mu   sync.Mutex
	last map[types.NamespacedName]time.Time
}

func (m *countsMemo) due(key types.NamespacedName, interval time.Duration, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if wait := m.last[key].Add(interval).Sub(now); wait > 0 {
		return wait
	}
	return 0
}

func (m *countsMemo) wrote(key types.NamespacedName, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[types.NamespacedName]time.Time{}
	}
	m.last[key] = now
}

func (m *countsMemo) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, key)
}
