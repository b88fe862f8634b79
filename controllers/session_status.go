package controllers

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
)

// This file maps a pass's plan onto the session's status: whether the
// stored status changes, and whether the write may wait (counts only, spaced
// by the session's throttle).

// statusDue says when the session status should be written: 0 now, a
// positive duration later (counts only, rate-limited), or -1 never.
func (r *OpsSessionReconciler) statusDue(sess *opsv1.OpsSession, plan admission.Plan, terminated bool, now time.Time) time.Duration {
	next := sess.DeepCopy()
	admission.SetSessionStatus(next, plan, terminated, now)
	st, cur := next.Status, sess.Status
	if equalStatus(cur, st) {
		return -1
	}
	// Counts, and ledger entries of operations that finished, may wait: both
	// are derived again from the operations on every pass.
	countsOnly := cur.ObservedGeneration == st.ObservedGeneration &&
		equalConditions(cur.Conditions, st.Conditions) &&
		ledgerOnlyShrank(cur.Admitted, st.Admitted)
	if !countsOnly {
		return 0
	}
	return r.throttle.wait(client.ObjectKeyFromObject(sess).String()+"/counts", r.CountsInterval, now)
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
