package lifecycle

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// SetConditions sets the Operation's Terminal and Ready conditions, and
// Reconciling and Stalled while they are True (absent otherwise, as kstatus
// reads them), and status.observedGeneration, from its phase. It reports
// whether anything changed; LastTransitionTime moves only when a condition's
// status flips.
func SetConditions(op *opsv1.Operation, now time.Time) bool {
	return setConditions(op, now, nil)
}

// ConditionsTrue reports whether op's conditions and observedGeneration
// already say what SetConditions would write for its phase, whoever wrote
// the phase. It does not touch op.
func ConditionsTrue(op *opsv1.Operation) bool {
	probe := *op
	probe.Status.Conditions = append([]metav1.Condition(nil), op.Status.Conditions...)
	return !setConditions(&probe, time.Time{}, nil)
}

// SetSessionMissing marks a Pending operation as waiting on an OpsSession that
// does not exist, and reports whether anything changed.
func SetSessionMissing(op *opsv1.Operation, now time.Time) bool {
	return setConditions(op, now, &metav1.Condition{
		Type: opsv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: opsv1.ReasonSessionNotFound,
		Message: fmt.Sprintf("OpsSession %q does not exist in namespace %s; the operation waits until it is created", op.Spec.SessionName, op.Namespace),
	})
}

// SetQueued marks a Pending operation as waiting for a slot, and reports
// whether anything changed.
func SetQueued(op *opsv1.Operation, limit int, now time.Time) bool {
	return setConditions(op, now, &metav1.Condition{
		Type: opsv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: opsv1.ReasonQueued,
		Message: fmt.Sprintf("queued: session %s is at its maxConcurrent limit of %d", op.Spec.SessionName, limit),
	})
}

// setConditions computes all four conditions, with override replacing the
// one of its type, and then sets or removes each once.
func setConditions(op *opsv1.Operation, now time.Time, override *metav1.Condition) bool {
	st := &op.Status
	phase := Normalize(st.Phase)
	reason := string(phase)
	msg := phaseMessage(op)

	terminal, ready, reconciling, stalled := metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionFalse
	switch {
	case phase == opsv1.PhaseFailed || phase == opsv1.PhaseRejected:
		terminal, stalled = metav1.ConditionTrue, metav1.ConditionTrue
	case IsTerminal(phase):
		terminal, ready = metav1.ConditionTrue, metav1.ConditionTrue
	case phase == opsv1.PhaseRunning:
		ready = metav1.ConditionTrue
	case phase == opsv1.PhaseRetiring:
		// Still serving, and on its way to Retired: kstatus InProgress.
		ready, reconciling = metav1.ConditionTrue, metav1.ConditionTrue
	default: // Pending, Provisioning
		reconciling = metav1.ConditionTrue
	}
	if phase == opsv1.PhaseRejected && st.Rejection != nil {
		reason = string(st.Rejection.Reason)
	}
	if strings.EqualFold(msg, reason) {
		// A message only where it says something: "running" under reason
		// Running repeats it, and every status write and watch event would
		// carry it in each condition (docs/benchmarks.md, write cost).
		msg = ""
	}
	if override != nil && override.Type == opsv1.ConditionStalled && override.Status == metav1.ConditionTrue {
		// Stalled and Reconciling at once reads as InProgress to kstatus,
		// which checks Reconciling first: a stall must be the only claim.
		reconciling = metav1.ConditionFalse
	}

	changed := st.ObservedGeneration != op.Generation
	st.ObservedGeneration = op.Generation
	for _, c := range []metav1.Condition{
		{Type: opsv1.ConditionTerminal, Status: terminal, Reason: reason, Message: msg},
		{Type: opsv1.ConditionReady, Status: ready, Reason: reason, Message: msg},
		{Type: opsv1.ConditionReconciling, Status: reconciling, Reason: reason, Message: msg},
		{Type: opsv1.ConditionStalled, Status: stalled, Reason: reason, Message: msg},
	} {
		if override != nil && override.Type == c.Type {
			c = *override
		}
		if c.Status == metav1.ConditionFalse && abnormalTrue(c.Type) {
			// kstatus reads an absent Reconciling or Stalled as False. Leaving
			// them out keeps every status write and watch event smaller.
			if meta.RemoveStatusCondition(&st.Conditions, c.Type) {
				changed = true
			}
			continue
		}
		c.ObservedGeneration, c.LastTransitionTime = op.Generation, metav1.NewTime(now)
		if meta.SetStatusCondition(&st.Conditions, c) {
			changed = true
		}
	}
	return changed
}

// abnormalTrue reports the kstatus conditions that are present only while True.
func abnormalTrue(typ string) bool {
	return typ == opsv1.ConditionReconciling || typ == opsv1.ConditionStalled
}

func phaseMessage(op *opsv1.Operation) string {
	st := &op.Status
	phase := Normalize(st.Phase)
	switch phase {
	case opsv1.PhasePending:
		return fmt.Sprintf("waiting for admission by session %s", op.Spec.SessionName)
	case opsv1.PhaseProvisioning:
		return "admitted; waiting for the agent to finish provisioning"
	case opsv1.PhaseRunning:
		return "running"
	case opsv1.PhaseRetiring:
		return "retiring"
	case opsv1.PhaseRejected:
		return RejectionMessage(op)
	}
	return OutcomeMessage(st.Outcome)
}

// RejectionMessage says why the session refused op, from its
// status.rejection: the message of a Rejected operation's conditions and the
// note of its Rejected event. Over the limit, it is MaxConcurrentExceededError's
// text, the error a Go caller of the registry gets.
func RejectionMessage(op *opsv1.Operation) string {
	r := op.Status.Rejection
	switch {
	case r == nil:
	case r.Reason == opsv1.RejectionMaxConcurrentExceeded && r.Limit != nil && r.Active != nil:
		return "rejected: " + (&MaxConcurrentExceededError{Limit: int(*r.Limit), Active: int(*r.Active)}).Error()
	case r.Reason == opsv1.RejectionOwnerTerminated:
		return fmt.Sprintf("rejected: session %s was terminated", op.Spec.SessionName)
	}
	return "rejected"
}

// OutcomeMessage describes a terminal outcome in one line.
func OutcomeMessage(o *opsv1.TerminalOutcome) string {
	if o == nil {
		return ""
	}
	withReason := func(s string) string {
		if o.Reason != nil && *o.Reason != "" {
			return s + ": " + *o.Reason
		}
		return s
	}
	switch o.Type {
	case opsv1.PhaseCompleted:
		return "completed"
	case opsv1.PhaseFailed:
		return opsv1.Truncate("failed: "+o.Error, 1024)
	case opsv1.PhaseAborted:
		return withReason("aborted")
	case opsv1.PhaseCancelled:
		return withReason("cancelled")
	case opsv1.PhaseRetired:
		return "retired"
	case opsv1.PhaseTerminated:
		return withReason("terminated")
	}
	return string(o.Type)
}
