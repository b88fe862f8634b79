package lifecycle

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// Args are a call's arguments; each call reads only its own.
type Args struct {
	// Result is complete_operation's result.
	Result *opsv1.OperationResult
	// Error is fail_operation's and provisioning_failed's error.
	Error string
	// Reason is abort_provisioning's and cancel_operation's optional reason,
	// and terminate_owner's required one.
	Reason *string
	// Peer is peer_ready's handle.
	Peer *opsv1.PeerHandle
	// Message and Percent are report_progress's update.
	Message string
	Percent *float64
	// Rejection is why Reject refused the operation.
	Rejection *opsv1.Rejection
}

// Apply makes the call on op's status as of now, or returns the error the
// call gives without touching op. The status it leaves is what the caller
// writes, in one write, conditions included.
func Apply(op *opsv1.Operation, c Call, a Args, now time.Time) error {
	if err := Check(op, c); err != nil {
		return err
	}
	st := &op.Status
	ts := metav1.NewMicroTime(now)
	from := Normalize(st.Phase)
	to := Target(c, from)
	switch c {
	case Admit:
		st.AdmittedAt = &ts
		// Whatever a writer put here while the operation was Pending, the
		// registration time is what the API server vouches for.
		st.CreatedAt = ptrTo(RegisteredAt(op))
		st.LastHeartbeatTime = &ts
	case Reject:
		st.Rejection = a.Rejection
	case ProvisioningSucceeded:
		st.StartedAt = ptrTo(notBefore(ts, st.CreatedAt))
	case PeerReady:
		st.PeerReady = true
		st.PeerHandle = a.Peer
	case ReportProgress:
		p := st.Progress
		if p == nil {
			p = &opsv1.Progress{}
		}
		p.Count++
		p.Message = a.Message
		p.Percent = a.Percent
		st.Progress = p
	}
	if isAgentCall(c) {
		st.LastHeartbeatTime = &ts
	}
	if IsTerminal(to) {
		st.Outcome = outcomeFor(to, a)
		if st.CreatedAt == nil {
			st.CreatedAt = ptrTo(CreatedAt(op))
		}
		st.CompletedAt = ptrTo(notBefore(notBefore(ts, st.CreatedAt), st.StartedAt))
	}
	st.Phase = to
	SetConditions(op, now)
	return nil
}

// Check returns the error the call gives on op, in docs/lifecycle.md's order.
func Check(op *opsv1.Operation, c Call) error {
	from := Normalize(op.Status.Phase)
	if c == PeerReady {
		if op.Spec.Kind != opsv1.MobMemberChild {
			return &PeerNotExpectedError{ID: op.Name}
		}
		if op.Status.PeerReady {
			return &AlreadyPeerReadyError{ID: op.Name}
		}
	}
	if !Allowed(c, from) {
		return &InvalidTransitionError{ID: op.Name, Status: from, Action: c.Action()}
	}
	return nil
}

func isAgentCall(c Call) bool {
	switch c {
	case ProvisioningSucceeded, PeerReady, ReportProgress, CompleteOperation,
		FailOperation, ProvisioningFailed, MarkRetired:
		return true
	}
	return false
}

func outcomeFor(phase opsv1.OperationPhase, a Args) *opsv1.TerminalOutcome {
	o := &opsv1.TerminalOutcome{Type: phase}
	switch phase {
	case opsv1.PhaseCompleted:
		o.Result = a.Result
		if o.Result == nil {
			o.Result = &opsv1.OperationResult{}
		}
	case opsv1.PhaseFailed:
		o.Error = a.Error
	case opsv1.PhaseAborted, opsv1.PhaseCancelled:
		o.Reason = a.Reason
	case opsv1.PhaseTerminated:
		reason := ""
		if a.Reason != nil {
			reason = *a.Reason
		}
		o.Reason = &reason
	}
	return o
}

// CreatedAt is the registration time the snapshot reports: status.createdAt
// once written, else RegisteredAt.
func CreatedAt(op *opsv1.Operation) metav1.MicroTime {
	if op.Status.CreatedAt != nil {
		return *op.Status.CreatedAt
	}
	return RegisteredAt(op)
}

// RegisteredAt is the registration time as far as the API server vouches
// for it, and the Queue policy's FIFO key. metadata.creationTimestamp is set
// by the API server but has only seconds; the created-at annotation, written
// by the client at microsecond precision, refines it within that second and
// no further. So an agent that forges the annotation can reorder only among
// operations created in the same second, never jump the queue.
func RegisteredAt(op *opsv1.Operation) metav1.MicroTime {
	created := op.CreationTimestamp.Time
	s, ok := op.Annotations[opsv1.AnnotationCreatedAt]
	if !ok {
		return metav1.NewMicroTime(created)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		return metav1.NewMicroTime(created)
	case created.IsZero():
		// not stored yet (unit tests): nothing to vouch for it
	case t.Before(created):
		t = created
	case !t.Before(created.Add(time.Second)):
		t = created.Add(time.Second - time.Microsecond)
	}
	return metav1.NewMicroTime(t)
}

// notBefore keeps times ordered (created <= started <= completed) when they
// come from the clocks of different machines.
func notBefore(t metav1.MicroTime, earlier *metav1.MicroTime) metav1.MicroTime {
	if earlier != nil && t.Before(earlier) {
		return *earlier
	}
	return t
}

func ptrTo[T any](v T) *T { return &v }
