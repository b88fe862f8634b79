package lifecycle_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Times used by the builders: every status time an operation already has is
// before applyNow, the time calls are made at.
var (
	tCreation   = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) // metadata.creationTimestamp: seconds only
	tAnnotation = tCreation.Add(250*time.Millisecond + 123*time.Microsecond)
	tAdmitted   = tCreation.Add(1 * time.Second)
	tStarted    = tCreation.Add(2 * time.Second)
	tCompleted  = tCreation.Add(3 * time.Second)
	applyNow    = tCreation.Add(10 * time.Second)
)

const (
	testGeneration = 3
	testSession    = "sess" // spec.sessionName of the operations built here
)

func ptr[T any](v T) *T { return &v }

func micro(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

// opOption adjusts an operation built by newOp.
type opOption func(*opsv1.Operation)

func withPeerReady() opOption {
	return func(op *opsv1.Operation) {
		op.Status.PeerReady = true
		op.Status.PeerHandle = &opsv1.PeerHandle{PeerName: "old", TrustedPeer: opsv1.TrustedPeer{Name: "old", PeerID: "old-id", Address: "inproc://old"}}
	}
}

func withoutAnnotation() opOption {
	return func(op *opsv1.Operation) { delete(op.Annotations, opsv1.AnnotationCreatedAt) }
}

func withAnnotation(v string) opOption {
	return func(op *opsv1.Operation) { op.Annotations[opsv1.AnnotationCreatedAt] = v }
}

func withProgress(count int64, msg string, percent *float64) opOption {
	return func(op *opsv1.Operation) {
		op.Status.Progress = &opsv1.Progress{Count: count, Message: msg, Percent: percent}
	}
}

// newOp builds an operation of the kind in the phase, with the status a real
// history to that phase leaves: times, an outcome when terminal, a rejection
// when rejected, and conditions.
func newOp(name string, kind opsv1.OperationKind, phase opsv1.OperationPhase, opts ...opOption) *opsv1.Operation {
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			Namespace:         "ns",
			UID:               types.UID("uid-" + name),
			Generation:        testGeneration,
			CreationTimestamp: metav1.NewTime(tCreation),
			Annotations:       map[string]string{opsv1.AnnotationCreatedAt: tAnnotation.Format(time.RFC3339Nano)},
		},
		Spec: opsv1.OperationSpec{SessionName: testSession, Kind: kind},
	}
	st := &op.Status
	st.Phase = phase
	admitted := func() {
		st.CreatedAt = micro(tAnnotation)
		st.AdmittedAt = micro(tAdmitted)
		st.LastHeartbeatTime = micro(tAdmitted)
	}
	started := func() {
		admitted()
		st.StartedAt = micro(tStarted)
		st.LastHeartbeatTime = micro(tStarted)
	}
	switch phase {
	case provisioning:
		admitted()
	case running, retiring:
		started()
	case rejected:
		st.Rejection = &opsv1.Rejection{Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr[int32](1), Active: ptr[int32](1)}
	case completed, failed, aborted, cancelled, retired, terminated:
		if phase == aborted {
			admitted()
		} else {
			started()
		}
		st.CompletedAt = micro(tCompleted)
		st.Outcome = &opsv1.TerminalOutcome{Type: phase}
		switch phase {
		case completed:
			st.Outcome.Result = &opsv1.OperationResult{Content: "earlier"}
		case failed:
			st.Outcome.Error = "earlier"
		case terminated, cancelled, aborted:
			st.Outcome.Reason = ptr("earlier")
		}
	}
	for _, o := range opts {
		o(op)
	}
	lifecycle.SetConditions(op, tAdmitted)
	return op
}

// fullArgs sets every argument, so a test can see which ones a call reads.
func fullArgs() lifecycle.Args {
	return lifecycle.Args{
		Result:  &opsv1.OperationResult{Content: "the result", IsError: true, DurationMs: 1500, TokensUsed: 42},
		Error:   "it broke",
		Reason:  ptr("a reason"),
		Peer:    &opsv1.PeerHandle{PeerName: "peer-1", TrustedPeer: opsv1.TrustedPeer{Name: "peer-1", PeerID: "id-1", Address: "inproc://peer-1"}},
		Message: "halfway",
		Percent: ptr(0.5),
		Rejection: &opsv1.Rejection{
			Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr[int32](2), Active: ptr[int32](2),
		},
	}
}

// heartbeatCalls are the agent's status writes, plus admission, which starts
// the provisioning clock: each sets lastHeartbeatTime.
var heartbeatCalls = map[lifecycle.Call]bool{
	lifecycle.ProvisioningSucceeded: true, lifecycle.ProvisioningFailed: true, lifecycle.PeerReady: true,
	lifecycle.ReportProgress: true, lifecycle.CompleteOperation: true, lifecycle.FailOperation: true,
	lifecycle.MarkRetired: true, lifecycle.Admit: true,
}

// wantOutcome is the outcome a call that ends in terminal phase to leaves.
func wantOutcome(to opsv1.OperationPhase, a lifecycle.Args) *opsv1.TerminalOutcome {
	switch to {
	case completed:
		return &opsv1.TerminalOutcome{Type: completed, Result: a.Result}
	case failed:
		return &opsv1.TerminalOutcome{Type: failed, Error: a.Error}
	case aborted:
		return &opsv1.TerminalOutcome{Type: aborted, Reason: a.Reason}
	case cancelled:
		return &opsv1.TerminalOutcome{Type: cancelled, Reason: a.Reason}
	case retired:
		return &opsv1.TerminalOutcome{Type: retired}
	case terminated:
		return &opsv1.TerminalOutcome{Type: terminated, Reason: a.Reason}
	}
	return nil
}

// wantCheckErr is the error a call gives, per docs/lifecycle.md's order, or nil.
func wantCheckErr(name string, c lifecycle.Call, from opsv1.OperationPhase, kind opsv1.OperationKind, peerReady bool) error {
	if c == lifecycle.PeerReady {
		if kind != opsv1.MobMemberChild {
			return &lifecycle.PeerNotExpectedError{ID: name}
		}
		if peerReady {
			return &lifecycle.AlreadyPeerReadyError{ID: name}
		}
	}
	if _, ok := wantTransitions[c][norm(from)]; !ok {
		return &lifecycle.InvalidTransitionError{ID: name, Status: norm(from), Action: wantActions[c]}
	}
	return nil
}

// ignoreConditions leaves conditions to the conditions tests.
var ignoreConditions = cmpopts.IgnoreFields(opsv1.OperationStatus{}, "Conditions")

// TestApplyEveryCallFromEveryPhase walks every call x phase x kind and checks
// the whole resulting status against one written from docs/lifecycle.md.
func TestApplyEveryCallFromEveryPhase(t *testing.T) {
	kinds := []opsv1.OperationKind{opsv1.BackgroundToolOp, opsv1.MobMemberChild}
	for _, c := range lifecycle.Calls {
		for _, from := range phasesWithUnset {
			for _, kind := range kinds {
				t.Run(fmt.Sprintf("%s/%s/%s", c, phaseName(from), kind), func(t *testing.T) {
					op := newOp("op-1", kind, from)
					before := op.DeepCopy()
					args := fullArgs()

					err := lifecycle.Apply(op, c, args, applyNow)
					wantErr := wantCheckErr("op-1", c, from, kind, false)
					if diff := cmp.Diff(wantErr, err); diff != "" {
						t.Fatalf("Apply error mismatch (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(wantErr, lifecycle.Check(before, c)); diff != "" {
						t.Errorf("Check error mismatch (-want +got):\n%s", diff)
					}
					if wantErr != nil {
						if diff := cmp.Diff(before, op); diff != "" {
							t.Errorf("Apply changed op although it failed (-before +after):\n%s", diff)
						}
						return
					}

					to := wantTransitions[c][norm(from)]
					want := before.Status.DeepCopy()
					now := micro(applyNow)
					want.Phase = to
					want.ObservedGeneration = testGeneration
					switch c {
					case lifecycle.Admit:
						want.AdmittedAt = now
						want.CreatedAt = micro(tAnnotation)
					case lifecycle.Reject:
						want.Rejection = args.Rejection
					case lifecycle.ProvisioningSucceeded:
						want.StartedAt = now
					case lifecycle.PeerReady:
						want.PeerReady = true
						want.PeerHandle = args.Peer
					case lifecycle.ReportProgress:
						want.Progress = &opsv1.Progress{Count: 1, Message: args.Message, Percent: args.Percent}
					}
					if heartbeatCalls[c] {
						want.LastHeartbeatTime = now
					}
					if wantTerminal[to] {
						want.Outcome = wantOutcome(to, args)
						want.CompletedAt = now
						if want.CreatedAt == nil {
							want.CreatedAt = micro(tAnnotation)
						}
					}
					if diff := cmp.Diff(*want, op.Status, ignoreConditions); diff != "" {
						t.Errorf("status mismatch (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(before.ObjectMeta, op.ObjectMeta); diff != "" {
						t.Errorf("Apply changed metadata (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(before.Spec, op.Spec); diff != "" {
						t.Errorf("Apply changed spec (-want +got):\n%s", diff)
					}
					checkConditions(t, op, to)
				})
			}
		}
	}
}

func TestApplyOutcomes(t *testing.T) {
	cases := map[string]struct {
		from opsv1.OperationPhase
		call lifecycle.Call
		args lifecycle.Args
		want *opsv1.TerminalOutcome
	}{
		"complete with a result": {
			from: running, call: lifecycle.CompleteOperation,
			args: lifecycle.Args{Result: &opsv1.OperationResult{Content: "ok", DurationMs: 7, TokensUsed: 9}},
			want: &opsv1.TerminalOutcome{Type: completed, Result: &opsv1.OperationResult{Content: "ok", DurationMs: 7, TokensUsed: 9}},
		},
		"complete without a result still has one, as the CRD requires": {
			from: retiring, call: lifecycle.CompleteOperation,
			want: &opsv1.TerminalOutcome{Type: completed, Result: &opsv1.OperationResult{}},
		},
		"fail from running": {
			from: running, call: lifecycle.FailOperation, args: lifecycle.Args{Error: "oom", Reason: ptr("ignored")},
			want: &opsv1.TerminalOutcome{Type: failed, Error: "oom"},
		},
		"provisioning_failed": {
			from: provisioning, call: lifecycle.ProvisioningFailed, args: lifecycle.Args{Error: "no image"},
			want: &opsv1.TerminalOutcome{Type: failed, Error: "no image"},
		},
		"abort with a reason": {
			from: provisioning, call: lifecycle.AbortProvisioning, args: lifecycle.Args{Reason: ptr("user")},
			want: &opsv1.TerminalOutcome{Type: aborted, Reason: ptr("user")},
		},
		"abort without a reason": {
			from: provisioning, call: lifecycle.AbortProvisioning,
			want: &opsv1.TerminalOutcome{Type: aborted},
		},
		"cancel with a reason from pending": {
			from: pending, call: lifecycle.CancelOperation, args: lifecycle.Args{Reason: ptr("changed my mind"), Error: "ignored"},
			want: &opsv1.TerminalOutcome{Type: cancelled, Reason: ptr("changed my mind")},
		},
		"cancel without a reason": {
			from: running, call: lifecycle.CancelOperation,
			want: &opsv1.TerminalOutcome{Type: cancelled},
		},
		"mark_retired carries nothing": {
			from: retiring, call: lifecycle.MarkRetired, args: fullArgs(),
			want: &opsv1.TerminalOutcome{Type: retired},
		},
		"terminate with a reason": {
			from: provisioning, call: lifecycle.TerminateOwner, args: lifecycle.Args{Reason: ptr("session gone")},
			want: &opsv1.TerminalOutcome{Type: terminated, Reason: ptr("session gone")},
		},
		"terminate without a reason still has one, as the CRD requires": {
			from: pending, call: lifecycle.TerminateOwner,
			want: &opsv1.TerminalOutcome{Type: terminated, Reason: ptr("")},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			op := newOp("op-1", opsv1.BackgroundToolOp, tc.from)
			if err := lifecycle.Apply(op, tc.call, tc.args, applyNow); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tc.want, op.Status.Outcome); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
			if op.Status.Phase != tc.want.Type {
				t.Errorf("phase = %s, want %s", op.Status.Phase, tc.want.Type)
			}
		})
	}
}

func TestApplyTimes(t *testing.T) {
	t.Run("a full lifecycle sets createdAt, admittedAt, startedAt and completedAt in order", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, "")
		t1, t2, t3 := tCreation.Add(time.Second), tCreation.Add(2*time.Second), tCreation.Add(3*time.Second)
		mustApply(t, op, lifecycle.Admit, lifecycle.Args{}, t1)
		if op.Status.StartedAt != nil || op.Status.CompletedAt != nil {
			t.Fatalf("admission set startedAt or completedAt: %+v", op.Status)
		}
		mustApply(t, op, lifecycle.ProvisioningSucceeded, lifecycle.Args{}, t2)
		if op.Status.CompletedAt != nil {
			t.Fatalf("provisioning_succeeded set completedAt")
		}
		mustApply(t, op, lifecycle.CompleteOperation, lifecycle.Args{}, t3)
		want := map[string]*metav1.MicroTime{
			"createdAt": micro(tAnnotation), "admittedAt": micro(t1), "startedAt": micro(t2),
			"completedAt": micro(t3), "lastHeartbeatTime": micro(t3),
		}
		got := map[string]*metav1.MicroTime{
			"createdAt": op.Status.CreatedAt, "admittedAt": op.Status.AdmittedAt, "startedAt": op.Status.StartedAt,
			"completedAt": op.Status.CompletedAt, "lastHeartbeatTime": op.Status.LastHeartbeatTime,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("times mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("createdAt keeps the annotation's sub-second precision", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, pending)
		mustApply(t, op, lifecycle.Admit, lifecycle.Args{}, applyNow)
		if !op.Status.CreatedAt.Time.Equal(tAnnotation) {
			t.Errorf("createdAt = %v, want %v", op.Status.CreatedAt.Time, tAnnotation)
		}
	})
	t.Run("createdAt falls back to creationTimestamp without the annotation", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, pending, withoutAnnotation())
		mustApply(t, op, lifecycle.CancelOperation, lifecycle.Args{}, applyNow)
		if !op.Status.CreatedAt.Time.Equal(tCreation) {
			t.Errorf("createdAt = %v, want %v", op.Status.CreatedAt.Time, tCreation)
		}
	})
	t.Run("createdAt falls back to creationTimestamp with a malformed annotation", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, pending, withAnnotation("yesterday"))
		mustApply(t, op, lifecycle.TerminateOwner, lifecycle.Args{Reason: ptr("x")}, applyNow)
		if !op.Status.CreatedAt.Time.Equal(tCreation) {
			t.Errorf("createdAt = %v, want %v", op.Status.CreatedAt.Time, tCreation)
		}
	})
	t.Run("an existing createdAt is kept", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, running)
		op.Status.CreatedAt = micro(tCreation.Add(time.Millisecond))
		mustApply(t, op, lifecycle.FailOperation, lifecycle.Args{Error: "x"}, applyNow)
		if !op.Status.CreatedAt.Time.Equal(tCreation.Add(time.Millisecond)) {
			t.Errorf("createdAt = %v, want it kept", op.Status.CreatedAt.Time)
		}
	})
	t.Run("a rejection sets neither createdAt nor completedAt", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, pending)
		mustApply(t, op, lifecycle.Reject, lifecycle.Args{Rejection: &opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}}, applyNow)
		if op.Status.CompletedAt != nil || op.Status.Outcome != nil {
			t.Errorf("rejection set completedAt %v or outcome %v", op.Status.CompletedAt, op.Status.Outcome)
		}
	})
}

// TestApplyKeepsTimesOrderedUnderClockSkew: the agent's and controller's
// clocks differ, yet created <= started <= completed must hold.
func TestApplyKeepsTimesOrderedUnderClockSkew(t *testing.T) {
	t.Run("startedAt is not before createdAt", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, provisioning)
		early := tAnnotation.Add(-time.Second)
		mustApply(t, op, lifecycle.ProvisioningSucceeded, lifecycle.Args{}, early)
		if op.Status.StartedAt.Time.Before(op.Status.CreatedAt.Time) {
			t.Errorf("startedAt %v before createdAt %v", op.Status.StartedAt.Time, op.Status.CreatedAt.Time)
		}
	})
	t.Run("completedAt is not before startedAt", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, running)
		early := tStarted.Add(-500 * time.Millisecond)
		mustApply(t, op, lifecycle.CompleteOperation, lifecycle.Args{}, early)
		if op.Status.CompletedAt.Time.Before(op.Status.StartedAt.Time) {
			t.Errorf("completedAt %v before startedAt %v", op.Status.CompletedAt.Time, op.Status.StartedAt.Time)
		}
	})
	t.Run("completedAt is not before createdAt when cancelled while pending", func(t *testing.T) {
		op := newOp("op-1", opsv1.BackgroundToolOp, pending)
		early := tCreation.Add(-time.Minute)
		mustApply(t, op, lifecycle.CancelOperation, lifecycle.Args{}, early)
		if op.Status.CompletedAt.Time.Before(op.Status.CreatedAt.Time) {
			t.Errorf("completedAt %v before createdAt %v", op.Status.CompletedAt.Time, op.Status.CreatedAt.Time)
		}
	})
}

func TestApplyReportProgress(t *testing.T) {
	op := newOp("op-1", opsv1.BackgroundToolOp, running)
	steps := []struct {
		from    opsv1.OperationPhase
		msg     string
		percent *float64
	}{
		{running, "started", ptr(0.1)},
		{running, "halfway", ptr(0.5)},
		{retiring, "winding down", nil},
		{retiring, "", ptr(0.9)},
	}
	for i, s := range steps {
		if s.from == retiring && op.Status.Phase == running {
			mustApply(t, op, lifecycle.RequestRetire, lifecycle.Args{}, applyNow)
		}
		mustApply(t, op, lifecycle.ReportProgress, lifecycle.Args{Message: s.msg, Percent: s.percent, Error: "ignored"}, applyNow)
		want := &opsv1.Progress{Count: int64(i + 1), Message: s.msg, Percent: s.percent}
		if diff := cmp.Diff(want, op.Status.Progress); diff != "" {
			t.Errorf("after report %d (-want +got):\n%s", i+1, diff)
		}
		if op.Status.Phase != s.from {
			t.Errorf("after report %d phase = %s, want %s", i+1, op.Status.Phase, s.from)
		}
	}
	// Progress survives the terminal transition.
	mustApply(t, op, lifecycle.MarkRetired, lifecycle.Args{}, applyNow)
	if op.Status.Progress == nil || op.Status.Progress.Count != int64(len(steps)) {
		t.Errorf("progress after mark_retired = %+v, want count %d", op.Status.Progress, len(steps))
	}
	if err := lifecycle.Apply(op, lifecycle.ReportProgress, lifecycle.Args{}, applyNow); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Errorf("report_progress on a retired operation: err = %v, want InvalidTransition", err)
	}
}

func TestApplyReportProgressContinuesExistingCount(t *testing.T) {
	op := newOp("op-1", opsv1.BackgroundToolOp, running, withProgress(41, "old", ptr(0.2)))
	mustApply(t, op, lifecycle.ReportProgress, lifecycle.Args{Message: "new", Percent: ptr(0.3)}, applyNow)
	want := &opsv1.Progress{Count: 42, Message: "new", Percent: ptr(0.3)}
	if diff := cmp.Diff(want, op.Status.Progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestApplyPeerReady(t *testing.T) {
	for _, from := range []opsv1.OperationPhase{running, retiring} {
		t.Run(string(from), func(t *testing.T) {
			op := newOp("mob-1", opsv1.MobMemberChild, from)
			handle := fullArgs().Peer
			mustApply(t, op, lifecycle.PeerReady, lifecycle.Args{Peer: handle}, applyNow)
			if !op.Status.PeerReady {
				t.Errorf("peerReady = false after peer_ready")
			}
			if diff := cmp.Diff(handle, op.Status.PeerHandle); diff != "" {
				t.Errorf("peer handle (-want +got):\n%s", diff)
			}
			if op.Status.Phase != from {
				t.Errorf("phase = %s, want %s", op.Status.Phase, from)
			}
			before := op.DeepCopy()
			err := lifecycle.Apply(op, lifecycle.PeerReady, lifecycle.Args{Peer: &opsv1.PeerHandle{PeerName: "other"}}, applyNow.Add(time.Second))
			if diff := cmp.Diff(&lifecycle.AlreadyPeerReadyError{ID: "mob-1"}, err); diff != "" {
				t.Errorf("second peer_ready error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, op); diff != "" {
				t.Errorf("second peer_ready changed op (-before +after):\n%s", diff)
			}
			// peerReady and its handle survive the terminal transition.
			mustApply(t, op, lifecycle.CompleteOperation, lifecycle.Args{}, applyNow)
			if !op.Status.PeerReady || op.Status.PeerHandle == nil {
				t.Errorf("peer state lost at completion: %v %v", op.Status.PeerReady, op.Status.PeerHandle)
			}
		})
	}
}

// TestPeerReadyCheckOrder: PeerNotExpected first (even when final or already
// ready), then AlreadyPeerReady (in any phase), then InvalidTransition.
func TestPeerReadyCheckOrder(t *testing.T) {
	for _, from := range phasesWithUnset {
		for _, ready := range []bool{false, true} {
			for _, kind := range []opsv1.OperationKind{opsv1.BackgroundToolOp, opsv1.MobMemberChild} {
				t.Run(fmt.Sprintf("%s/ready=%v/%s", phaseName(from), ready, kind), func(t *testing.T) {
					var opts []opOption
					if ready {
						opts = append(opts, withPeerReady())
					}
					const name = "op-7"
					op := newOp(name, kind, from, opts...)
					before := op.DeepCopy()
					var want error
					switch {
					case kind != opsv1.MobMemberChild:
						want = &lifecycle.PeerNotExpectedError{ID: name}
					case ready:
						want = &lifecycle.AlreadyPeerReadyError{ID: name}
					case from != running && from != retiring:
						want = &lifecycle.InvalidTransitionError{ID: name, Status: norm(from), Action: "peer_ready"}
					}
					err := lifecycle.Apply(op, lifecycle.PeerReady, fullArgs(), applyNow)
					if diff := cmp.Diff(want, err); diff != "" {
						t.Fatalf("error (-want +got):\n%s", diff)
					}
					if want != nil {
						if diff := cmp.Diff(before, op); diff != "" {
							t.Errorf("failed peer_ready changed op (-before +after):\n%s", diff)
						}
					}
				})
			}
		}
	}
}

func TestInvalidTransitionMessage(t *testing.T) {
	cases := map[string]struct {
		name string
		from opsv1.OperationPhase
		call lifecycle.Call
		want string
	}{
		"complete from provisioning": {"op-a", provisioning, lifecycle.CompleteOperation, "invalid lifecycle transition for op-a: Provisioning -> complete_operation"},
		"retire from retiring":       {"op-b", retiring, lifecycle.RequestRetire, "invalid lifecycle transition for op-b: Retiring -> request_retire"},
		"provisioning_failed uses fail_operation": {
			"op-c", running, lifecycle.ProvisioningFailed, "invalid lifecycle transition for op-c: Running -> fail_operation",
		},
		"terminal again reports the terminal status": {"op-d", completed, lifecycle.CancelOperation, "invalid lifecycle transition for op-d: Completed -> cancel_operation"},
		"terminate a terminated operation":           {"op-e", terminated, lifecycle.TerminateOwner, "invalid lifecycle transition for op-e: Terminated -> terminate_owner"},
		"unset phase reads as Pending":               {"op-f", "", lifecycle.ProvisioningSucceeded, "invalid lifecycle transition for op-f: Pending -> provisioning_succeeded"},
		"admit a rejected operation":                 {"op-g", rejected, lifecycle.Admit, "invalid lifecycle transition for op-g: Rejected -> admit"},
		"reject an admitted operation":               {"op-h", provisioning, lifecycle.Reject, "invalid lifecycle transition for op-h: Provisioning -> reject"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			op := newOp(tc.name, opsv1.MobMemberChild, tc.from)
			err := lifecycle.Apply(op, tc.call, fullArgs(), applyNow)
			if err == nil {
				t.Fatalf("Apply succeeded, want %q", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("message = %q, want %q", got, tc.want)
			}
			var it *lifecycle.InvalidTransitionError
			if !errors.As(err, &it) {
				t.Fatalf("errors.As(%T, *InvalidTransitionError) = false", err)
			}
			if it.ID != tc.name || it.Status != norm(tc.from) || it.Action != wantActions[tc.call] {
				t.Errorf("fields = %+v", *it)
			}
		})
	}
}

func TestErrorsIsAndAs(t *testing.T) {
	sentinels := []error{
		lifecycle.ErrNotFound, lifecycle.ErrAlreadyRegistered, lifecycle.ErrInvalidTransition,
		lifecycle.ErrPeerNotExpected, lifecycle.ErrAlreadyPeerReady, lifecycle.ErrMaxConcurrentExceeded,
		lifecycle.ErrDuplicateWaitOperation,
	}
	cases := map[string]struct {
		err      error
		sentinel error
		msg      string
		// as checks errors.As into the error's own type and its fields.
		as func(t *testing.T, err error)
	}{
		"NotFound": {
			err: &lifecycle.NotFoundError{ID: "x"}, sentinel: lifecycle.ErrNotFound, msg: "operation not found: x",
			as: func(t *testing.T, err error) {
				var e *lifecycle.NotFoundError
				if !errors.As(err, &e) || e.ID != "x" {
					t.Errorf("errors.As NotFoundError: %v %+v", errors.As(err, &e), e)
				}
			},
		},
		"AlreadyRegistered": {
			err: &lifecycle.AlreadyRegisteredError{ID: "x"}, sentinel: lifecycle.ErrAlreadyRegistered, msg: "operation already registered: x",
			as: func(t *testing.T, err error) {
				var e *lifecycle.AlreadyRegisteredError
				if !errors.As(err, &e) || e.ID != "x" {
					t.Errorf("errors.As AlreadyRegisteredError: %+v", e)
				}
			},
		},
		"InvalidTransition": {
			err:      &lifecycle.InvalidTransitionError{ID: "x", Status: running, Action: lifecycle.Admit.Action()},
			sentinel: lifecycle.ErrInvalidTransition, msg: "invalid lifecycle transition for x: Running -> admit",
			as: func(t *testing.T, err error) {
				var e *lifecycle.InvalidTransitionError
				if !errors.As(err, &e) || e.ID != "x" || e.Status != running || e.Action != lifecycle.Admit.Action() {
					t.Errorf("errors.As InvalidTransitionError: %+v", e)
				}
			},
		},
		"PeerNotExpected": {
			err: &lifecycle.PeerNotExpectedError{ID: "x"}, sentinel: lifecycle.ErrPeerNotExpected,
			msg: "peer not expected for operation x: only MobMemberChild reports peer-ready",
			as: func(t *testing.T, err error) {
				var e *lifecycle.PeerNotExpectedError
				if !errors.As(err, &e) || e.ID != "x" {
					t.Errorf("errors.As PeerNotExpectedError: %+v", e)
				}
			},
		},
		"AlreadyPeerReady": {
			err: &lifecycle.AlreadyPeerReadyError{ID: "x"}, sentinel: lifecycle.ErrAlreadyPeerReady, msg: "operation already peer-ready: x",
			as: func(t *testing.T, err error) {
				var e *lifecycle.AlreadyPeerReadyError
				if !errors.As(err, &e) || e.ID != "x" {
					t.Errorf("errors.As AlreadyPeerReadyError: %+v", e)
				}
			},
		},
		"MaxConcurrentExceeded": {
			err: &lifecycle.MaxConcurrentExceededError{Limit: 2, Active: 3}, sentinel: lifecycle.ErrMaxConcurrentExceeded,
			msg: "max concurrent operations exceeded: limit 2, active 3",
			as: func(t *testing.T, err error) {
				var e *lifecycle.MaxConcurrentExceededError
				if !errors.As(err, &e) || e.Limit != 2 || e.Active != 3 {
					t.Errorf("errors.As MaxConcurrentExceededError: %+v", e)
				}
			},
		},
		"DuplicateWaitOperation": {
			err: &lifecycle.DuplicateWaitOperationError{ID: "x"}, sentinel: lifecycle.ErrDuplicateWaitOperation,
			msg: "duplicate operation in wait request: x",
			as: func(t *testing.T, err error) {
				var e *lifecycle.DuplicateWaitOperationError
				if !errors.As(err, &e) || e.ID != "x" {
					t.Errorf("errors.As DuplicateWaitOperationError: %+v", e)
				}
			},
		},
	}
	if len(cases) != len(sentinels) {
		t.Fatalf("%d cases for %d sentinels", len(cases), len(sentinels))
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.msg {
				t.Errorf("Error() = %q, want %q", got, tc.msg)
			}
			wrapped := fmt.Errorf("status write: %w", tc.err)
			for _, err := range []error{tc.err, wrapped, errors.Join(errors.New("other"), tc.err)} {
				for _, s := range sentinels {
					if got, want := errors.Is(err, s), s == tc.sentinel; got != want {
						t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, want)
					}
				}
				tc.as(t, err)
			}
		})
	}
}

func TestCreatedAt(t *testing.T) {
	cases := map[string]struct {
		op   *opsv1.Operation
		want time.Time
	}{
		"status first": {
			op:   newOp("a", opsv1.BackgroundToolOp, running, func(op *opsv1.Operation) { op.Status.CreatedAt = micro(tCreation.Add(time.Hour)) }),
			want: tCreation.Add(time.Hour),
		},
		"then the annotation": {op: newOp("a", opsv1.BackgroundToolOp, pending), want: tAnnotation},
		"then creationTimestamp": {
			op: newOp("a", opsv1.BackgroundToolOp, pending, withoutAnnotation()), want: tCreation,
		},
		"a malformed annotation is ignored": {
			op: newOp("a", opsv1.BackgroundToolOp, pending, withAnnotation("not a time")), want: tCreation,
		},
		"an RFC 3339 annotation without fraction": {
			op:   newOp("a", opsv1.BackgroundToolOp, pending, withAnnotation("2026-03-01T10:00:00Z")),
			want: tCreation,
		},
		"an annotation before creationTimestamp is raised to it": {
			op:   newOp("a", opsv1.BackgroundToolOp, pending, withAnnotation("2026-03-01T09:00:00.5Z")),
			want: tCreation,
		},
		"an annotation past the creation second is kept within it": {
			op:   newOp("a", opsv1.BackgroundToolOp, pending, withAnnotation("2026-03-01T10:00:07Z")),
			want: tCreation.Add(time.Second - time.Microsecond),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := lifecycle.CreatedAt(tc.op); !got.Time.Equal(tc.want) {
				t.Errorf("CreatedAt = %v, want %v", got.Time, tc.want)
			}
		})
	}
}

// TestRegisteredAtIgnoresStatus: the FIFO key is what the API server vouches
// for, not a status.createdAt that any status writer could set, and
// admission stores that key as status.createdAt.
func TestRegisteredAtIgnoresStatus(t *testing.T) {
	op := newOp("a", opsv1.BackgroundToolOp, pending, func(op *opsv1.Operation) { op.Status.CreatedAt = micro(tCreation.Add(-time.Hour)) })
	if got := lifecycle.RegisteredAt(op); !got.Time.Equal(tAnnotation) {
		t.Errorf("RegisteredAt = %v, want %v", got.Time, tAnnotation)
	}
	if err := lifecycle.Apply(op, lifecycle.Admit, lifecycle.Args{}, tAdmitted); err != nil {
		t.Fatal(err)
	}
	if got := op.Status.CreatedAt.Time; !got.Equal(tAnnotation) {
		t.Errorf("status.createdAt after Admit = %v, want %v", got, tAnnotation)
	}
}

// wantConditions is each phase's condition statuses, written by hand from
// conditions.go's doc comments and api/v1alpha1/conditions.go.
var wantConditions = map[opsv1.OperationPhase]map[string]metav1.ConditionStatus{}

func init() {
	const T, F = metav1.ConditionTrue, metav1.ConditionFalse
	row := func(terminal, ready, reconciling, stalled metav1.ConditionStatus) map[string]metav1.ConditionStatus {
		m := map[string]metav1.ConditionStatus{opsv1.ConditionTerminal: terminal, opsv1.ConditionReady: ready}
		// Reconciling and Stalled are present only while True.
		if reconciling == T {
			m[opsv1.ConditionReconciling] = T
		}
		if stalled == T {
			m[opsv1.ConditionStalled] = T
		}
		return m
	}
	wantConditions = map[opsv1.OperationPhase]map[string]metav1.ConditionStatus{
		//            terminal ready reconciling stalled
		pending:      row(F, F, T, F),
		provisioning: row(F, F, T, F),
		running:      row(F, T, F, F),
		retiring:     row(F, T, T, F),
		completed:    row(T, T, F, F),
		failed:       row(T, F, F, T),
		aborted:      row(T, T, F, F),
		cancelled:    row(T, T, F, F),
		retired:      row(T, T, F, F),
		terminated:   row(T, T, F, F),
		rejected:     row(T, F, F, T),
	}
}

// checkConditions checks the four conditions and observedGeneration for phase.
func checkConditions(t *testing.T, op *opsv1.Operation, phase opsv1.OperationPhase) {
	t.Helper()
	want := wantConditions[norm(phase)]
	got := map[string]metav1.ConditionStatus{}
	for _, c := range op.Status.Conditions {
		if _, dup := got[c.Type]; dup {
			t.Errorf("condition %s appears twice", c.Type)
		}
		got[c.Type] = c.Status
		if c.ObservedGeneration != op.Generation {
			t.Errorf("condition %s observedGeneration = %d, want %d", c.Type, c.ObservedGeneration, op.Generation)
		}
		if c.Reason == "" {
			t.Errorf("condition %s has no reason", c.Type)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("conditions for %s (-want +got):\n%s", phase, diff)
	}
	if op.Status.ObservedGeneration != op.Generation {
		t.Errorf("status.observedGeneration = %d, want %d", op.Status.ObservedGeneration, op.Generation)
	}
}

func bareOp(phase opsv1.OperationPhase) *opsv1.Operation {
	return &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "op-1", Namespace: "ns", Generation: 5},
		Spec:       opsv1.OperationSpec{SessionName: testSession, Kind: opsv1.BackgroundToolOp},
		Status:     opsv1.OperationStatus{Phase: phase},
	}
}

func findCondition(op *opsv1.Operation, typ string) *metav1.Condition {
	for i := range op.Status.Conditions {
		if op.Status.Conditions[i].Type == typ {
			return &op.Status.Conditions[i]
		}
	}
	return nil
}

func TestSetConditionsForEveryPhase(t *testing.T) {
	t1 := tCreation.Add(time.Minute)
	for _, phase := range phasesWithUnset {
		t.Run(phaseName(phase), func(t *testing.T) {
			op := bareOp(phase)
			if wantTerminal[phase] {
				op.Status.Outcome = &opsv1.TerminalOutcome{Type: phase}
			}
			if !lifecycle.SetConditions(op, t1) {
				t.Errorf("SetConditions on a fresh operation reported no change")
			}
			checkConditions(t, op, phase)
			if want := len(wantConditions[norm(phase)]); len(op.Status.Conditions) != want {
				t.Errorf("got %d conditions, want %d", len(op.Status.Conditions), want)
			}
			for _, c := range op.Status.Conditions {
				if !c.LastTransitionTime.Time.Equal(t1) {
					t.Errorf("condition %s lastTransitionTime = %v, want %v", c.Type, c.LastTransitionTime, t1)
				}
				if c.Reason != string(norm(phase)) {
					t.Errorf("condition %s reason = %q, want %q", c.Type, c.Reason, norm(phase))
				}
			}
		})
	}
}

func TestSetConditionsLastTransitionTime(t *testing.T) {
	t1, t2, t3 := tCreation.Add(time.Minute), tCreation.Add(2*time.Minute), tCreation.Add(3*time.Minute)
	for _, phase := range phasesWithUnset {
		t.Run(phaseName(phase), func(t *testing.T) {
			op := bareOp(phase)
			lifecycle.SetConditions(op, t1)
			first := op.DeepCopy()
			if lifecycle.SetConditions(op, t2) {
				t.Errorf("SetConditions again at a later time reported a change")
			}
			if diff := cmp.Diff(first, op); diff != "" {
				t.Errorf("SetConditions again changed the operation (-first +second):\n%s", diff)
			}
			// A new generation changes observedGeneration but not LastTransitionTime.
			op.Generation++
			if !lifecycle.SetConditions(op, t3) {
				t.Errorf("SetConditions with a new generation reported no change")
			}
			for _, c := range op.Status.Conditions {
				if !c.LastTransitionTime.Time.Equal(t1) {
					t.Errorf("condition %s lastTransitionTime moved to %v on a generation bump", c.Type, c.LastTransitionTime)
				}
			}
			checkConditions(t, op, phase)
		})
	}
}

func TestSetConditionsMovesLastTransitionTimeOnlyOnFlip(t *testing.T) {
	t1, t2 := tCreation.Add(time.Minute), tCreation.Add(2*time.Minute)
	for _, from := range phasesWithUnset {
		for _, to := range allPhases {
			t.Run(phaseName(from)+"->"+string(to), func(t *testing.T) {
				op := bareOp(from)
				lifecycle.SetConditions(op, t1)
				op.Status.Phase = to
				lifecycle.SetConditions(op, t2)
				for typ, status := range wantConditions[to] {
					c := findCondition(op, typ)
					if c == nil {
						t.Fatalf("condition %s missing", typ)
					}
					want := t1
					if wantConditions[norm(from)][typ] != status {
						want = t2
					}
					if !c.LastTransitionTime.Time.Equal(want) {
						t.Errorf("condition %s lastTransitionTime = %v, want %v", typ, c.LastTransitionTime.Time, want)
					}
					if c.Reason != string(to) {
						t.Errorf("condition %s reason = %q, want %q", typ, c.Reason, to)
					}
				}
				checkConditions(t, op, to)
			})
		}
	}
}

func TestSetConditionsMessages(t *testing.T) {
	cases := map[string]struct {
		status     opsv1.OperationStatus
		wantReason string
		wantMsg    string
	}{
		"pending":      {opsv1.OperationStatus{}, "Pending", "waiting for admission by session sess"},
		"provisioning": {opsv1.OperationStatus{Phase: provisioning}, "Provisioning", "admitted; waiting for the agent to finish provisioning"},
		"running":      {opsv1.OperationStatus{Phase: running}, "Running", ""},
		"retiring":     {opsv1.OperationStatus{Phase: retiring}, "Retiring", ""},
		"completed": {
			opsv1.OperationStatus{Phase: completed, Outcome: &opsv1.TerminalOutcome{Type: completed, Result: &opsv1.OperationResult{}}},
			"Completed", "",
		},
		"failed": {
			opsv1.OperationStatus{Phase: failed, Outcome: &opsv1.TerminalOutcome{Type: failed, Error: "disk full"}},
			"Failed", "failed: disk full",
		},
		"aborted with reason": {
			opsv1.OperationStatus{Phase: aborted, Outcome: &opsv1.TerminalOutcome{Type: aborted, Reason: ptr("user")}},
			"Aborted", "aborted: user",
		},
		"cancelled without reason": {
			opsv1.OperationStatus{Phase: cancelled, Outcome: &opsv1.TerminalOutcome{Type: cancelled}},
			"Cancelled", "",
		},
		"cancelled with empty reason": {
			opsv1.OperationStatus{Phase: cancelled, Outcome: &opsv1.TerminalOutcome{Type: cancelled, Reason: ptr("")}},
			"Cancelled", "",
		},
		"retired": {
			opsv1.OperationStatus{Phase: retired, Outcome: &opsv1.TerminalOutcome{Type: retired}},
			"Retired", "",
		},
		"terminated": {
			opsv1.OperationStatus{Phase: terminated, Outcome: &opsv1.TerminalOutcome{Type: terminated, Reason: ptr("shutdown")}},
			"Terminated", "terminated: shutdown",
		},
		"rejected over the limit": {
			opsv1.OperationStatus{Phase: rejected, Rejection: &opsv1.Rejection{
				Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr[int32](2), Active: ptr[int32](3),
			}},
			"MaxConcurrentExceeded", "rejected: max concurrent operations exceeded: limit 2, active 3",
		},
		"rejected after termination": {
			opsv1.OperationStatus{Phase: rejected, Rejection: &opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}},
			"OwnerTerminated", "rejected: session sess was terminated",
		},
		"rejected without a rejection": {opsv1.OperationStatus{Phase: rejected}, "Rejected", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			op := bareOp("")
			op.Status = tc.status
			lifecycle.SetConditions(op, applyNow)
			for _, c := range op.Status.Conditions {
				if c.Reason != tc.wantReason || c.Message != tc.wantMsg {
					t.Errorf("condition %s = (%q, %q), want (%q, %q)", c.Type, c.Reason, c.Message, tc.wantReason, tc.wantMsg)
				}
			}
		})
	}
}

func TestOutcomeMessageTruncatesLongErrors(t *testing.T) {
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'e'
	}
	msg := lifecycle.OutcomeMessage(&opsv1.TerminalOutcome{Type: failed, Error: string(long)})
	if len(msg) != 1024 || msg[len(msg)-3:] != "..." {
		t.Errorf("len = %d, suffix %q; want 1024 ending in ...", len(msg), msg[len(msg)-3:])
	}
	if got := lifecycle.OutcomeMessage(nil); got != "" {
		t.Errorf("OutcomeMessage(nil) = %q, want empty", got)
	}
}

// TestSetQueuedIsIdempotent: the controller calls SetQueued on every reconcile
// of a queued operation and writes only when it reports a change.
func TestSetQueuedIsIdempotent(t *testing.T) {
	t1, t2 := tCreation.Add(time.Minute), tCreation.Add(2*time.Minute)
	op := bareOp(pending)
	if !lifecycle.SetQueued(op, 2, t1) {
		t.Fatalf("first SetQueued reported no change")
	}
	c := findCondition(op, opsv1.ConditionReconciling)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != opsv1.ReasonQueued ||
		c.Message != "queued: session sess is at its maxConcurrent limit of 2" {
		t.Fatalf("Reconciling condition = %+v", c)
	}
	first := op.DeepCopy()
	if lifecycle.SetQueued(op, 2, t2) {
		t.Errorf("SetQueued with the same arguments at a later time reported a change")
	}
	if diff := cmp.Diff(first, op); diff != "" {
		t.Errorf("SetQueued again changed the operation (-first +second):\n%s", diff)
	}
}

// TestSetSessionMissingIsIdempotent: same for an operation whose session does
// not exist yet.
func TestSetSessionMissingIsIdempotent(t *testing.T) {
	t1, t2 := tCreation.Add(time.Minute), tCreation.Add(2*time.Minute)
	op := bareOp(pending)
	if !lifecycle.SetSessionMissing(op, t1) {
		t.Fatalf("first SetSessionMissing reported no change")
	}
	c := findCondition(op, opsv1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != opsv1.ReasonSessionNotFound {
		t.Fatalf("Stalled condition = %+v", c)
	}
	// kstatus reads Reconciling before Stalled: a stall must be the only claim.
	if c := findCondition(op, opsv1.ConditionReconciling); c != nil {
		t.Errorf("Reconciling = %+v beside Stalled; want it absent", c)
	}
	first := op.DeepCopy()
	if lifecycle.SetSessionMissing(op, t2) {
		t.Errorf("SetSessionMissing at a later time reported a change")
	}
	if diff := cmp.Diff(first, op); diff != "" {
		t.Errorf("SetSessionMissing again changed the operation (-first +second):\n%s", diff)
	}
}

func mustApply(t *testing.T, op *opsv1.Operation, c lifecycle.Call, a lifecycle.Args, now time.Time) {
	t.Helper()
	if err := lifecycle.Apply(op, c, a, now); err != nil {
		t.Fatalf("Apply(%s) from %q: %v", c, op.Status.Phase, err)
	}
}

// TestConditionsTrue: true after any write made through Apply, false after a
// raw phase change that left the conditions behind (or a spec change that
// moved the generation), and it never touches the operation.
func TestConditionsTrue(t *testing.T) {
	for _, phase := range lifecycle.Phases {
		t.Run(string(phase), func(t *testing.T) {
			op := newOp("a", opsv1.MobMemberChild, phase)
			lifecycle.SetConditions(op, tCompleted)
			if !lifecycle.ConditionsTrue(op) {
				t.Fatalf("ConditionsTrue after SetConditions = false; conditions %+v", op.Status.Conditions)
			}
			op.Generation++
			before := op.DeepCopy()
			if lifecycle.ConditionsTrue(op) {
				t.Errorf("ConditionsTrue after a spec change = true")
			}
			if diff := cmp.Diff(before, op); diff != "" {
				t.Errorf("ConditionsTrue changed the operation (-before +after):\n%s", diff)
			}
		})
	}
	// A raw write Running -> Failed that keeps Running's conditions.
	op := newOp("a", opsv1.BackgroundToolOp, running)
	lifecycle.SetConditions(op, tStarted)
	op.Status.Phase = opsv1.PhaseFailed
	op.Status.Outcome = &opsv1.TerminalOutcome{Type: opsv1.PhaseFailed, Error: "boom"}
	if lifecycle.ConditionsTrue(op) {
		t.Errorf("ConditionsTrue after a raw Running -> Failed = true")
	}
}
