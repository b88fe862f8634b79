package lifecycle

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// Control is what the controller does next for one Operation: carry out a
// user's request or a deadline (Do), or nothing until After. The zero
// Control means nothing to do and no deadline to wait for.
type Control struct {
	// Do is the call to make now; nil means none.
	Do *Action
	// After is when the next deadline falls due; zero means none. It is set
	// only when Do is nil.
	After time.Duration
}

// Action is one call the controller makes on an Operation, with the reason
// of the event it sends once the write succeeded (an opsv1.EventReason*).
type Action struct {
	Call   Call
	Args   Args
	Reason string // event reason
}

// NextControl decides the controller's next step for op, with the session's
// deadline defaults (sess may be nil). Requests come before deadlines, and
// cancel before abort before retire.
func NextControl(op *opsv1.Operation, sess *opsv1.OpsSession, now time.Time) Control {
	phase := Normalize(op.Status.Phase)
	if IsFinal(phase) {
		return Control{}
	}
	spec := &op.Spec
	switch {
	case spec.Cancel != nil && Allowed(CancelOperation, phase):
		return Control{Do: &Action{Call: CancelOperation, Args: Args{Reason: spec.Cancel.Reason}, Reason: opsv1.EventReasonCancelled}}
	case spec.Abort != nil && Allowed(AbortProvisioning, phase):
		return Control{Do: &Action{Call: AbortProvisioning, Args: Args{Reason: spec.Abort.Reason}, Reason: opsv1.EventReasonAborted}}
	case spec.Retire != nil && Allowed(RequestRetire, phase):
		return Control{Do: &Action{Call: RequestRetire, Reason: opsv1.EventReasonRetiring}}
	}

	var timeout *time.Duration
	var since time.Time
	var message func(time.Duration) string
	switch phase {
	case opsv1.PhaseProvisioning:
		timeout = pick(spec.ProvisioningTimeout, sess, func(s *opsv1.OpsSessionSpec) *metav1.Duration { return s.ProvisioningTimeout })
		if op.Status.AdmittedAt != nil {
			since = op.Status.AdmittedAt.Time
		}
		message = provisioningTimeoutMessage
	case opsv1.PhaseRunning, opsv1.PhaseRetiring:
		timeout = pick(spec.HeartbeatTimeout, sess, func(s *opsv1.OpsSessionSpec) *metav1.Duration { return s.HeartbeatTimeout })
		if op.Status.LastHeartbeatTime != nil {
			since = op.Status.LastHeartbeatTime.Time
		}
		message = heartbeatTimeoutMessage
	}
	if timeout == nil || since.IsZero() {
		return Control{}
	}
	if left := since.Add(*timeout).Sub(now); left > 0 {
		return Control{After: left}
	}
	return Control{Do: &Action{Call: FailOperation, Args: Args{Error: message(*timeout)}, Reason: opsv1.EventReasonTimedOut}}
}

// provisioningTimeoutMessage is the outcome error of an operation still
// Provisioning d after its admission.
func provisioningTimeoutMessage(d time.Duration) string {
	return fmt.Sprintf("%s: still provisioning %s after admission", opsv1.ReasonProvisioningTimeout, d)
}

// heartbeatTimeoutMessage is the outcome error of a Running or Retiring
// operation with no agent status write for d.
func heartbeatTimeoutMessage(d time.Duration) string {
	return fmt.Sprintf("%s: no progress within %s", opsv1.ReasonHeartbeatTimeout, d)
}

func pick(own *metav1.Duration, sess *opsv1.OpsSession, def func(*opsv1.OpsSessionSpec) *metav1.Duration) *time.Duration {
	d := own
	if d == nil && sess != nil {
		d = def(&sess.Spec)
	}
	if d == nil || d.Duration <= 0 {
		return nil
	}
	return &d.Duration
}
