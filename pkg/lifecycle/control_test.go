package lifecycle_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// t0 is when every operation in the NextControl tables was admitted; the
// fake clock starts there and each case steps it forward by its elapsed time.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) *metav1.MicroTime {
	t := metav1.NewMicroTime(t0.Add(d))
	return &t
}

// str is a pointer to s (apply_test.go's generic helper is not relied on here).
func str(s string) *string { return &s }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func session(provisioning, heartbeat *metav1.Duration) *opsv1.OpsSession {
	return &opsv1.OpsSession{Spec: opsv1.OpsSessionSpec{ProvisioningTimeout: provisioning, HeartbeatTimeout: heartbeat}}
}

func request(reason string) *opsv1.ControlRequest {
	if reason == "" {
		return &opsv1.ControlRequest{}
	}
	return &opsv1.ControlRequest{Reason: str(reason)}
}

// reasonCancelled is the event reason of a cancellation the controller
// carried out.
const reasonCancelled = "Cancelled"

// The actions NextControl may return, written out by hand.
func cancelAction(reason *string) lifecycle.Control {
	return lifecycle.Control{Do: &lifecycle.Action{Call: lifecycle.CancelOperation, Args: lifecycle.Args{Reason: reason}, Reason: reasonCancelled}}
}

func abortAction(reason *string) lifecycle.Control {
	return lifecycle.Control{Do: &lifecycle.Action{Call: lifecycle.AbortProvisioning, Args: lifecycle.Args{Reason: reason}, Reason: "Aborted"}}
}

var retireAction = lifecycle.Control{Do: &lifecycle.Action{Call: lifecycle.RequestRetire, Reason: "Retiring"}}

func timedOut(msg string) lifecycle.Control {
	return lifecycle.Control{Do: &lifecycle.Action{Call: lifecycle.FailOperation, Args: lifecycle.Args{Error: msg}, Reason: "TimedOut"}}
}

func waitFor(d time.Duration) lifecycle.Control { return lifecycle.Control{After: d} }

var nothing = lifecycle.Control{}

// provisioningOp is admitted at t0 (admission also sets the heartbeat).
func provisioningOp(edit func(*opsv1.Operation)) *opsv1.Operation {
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "op", Namespace: "ns"},
		Spec:       opsv1.OperationSpec{SessionName: "s", Kind: opsv1.BackgroundToolOp},
		Status: opsv1.OperationStatus{
			Phase: provisioning, CreatedAt: at(-time.Second), AdmittedAt: at(0), LastHeartbeatTime: at(0),
		},
	}
	if edit != nil {
		edit(op)
	}
	return op
}

// runningOp was admitted at t0, started at 1s and last heard from at 2s.
func runningOp(edit func(*opsv1.Operation)) *opsv1.Operation {
	return provisioningOp(func(op *opsv1.Operation) {
		op.Status.Phase = running
		op.Status.StartedAt = at(time.Second)
		op.Status.LastHeartbeatTime = at(2 * time.Second)
		if edit != nil {
			edit(op)
		}
	})
}

func TestNextControl(t *testing.T) {
	allRequests := func(op *opsv1.Operation) {
		op.Spec.Cancel, op.Spec.Abort, op.Spec.Retire = request("stop it"), request("mob stopping"), request("")
	}
	// Deadlines that are long overdue at elapsed = 1h, unless a case says otherwise.
	overdue := func(op *opsv1.Operation) {
		op.Spec.ProvisioningTimeout, op.Spec.HeartbeatTimeout = dur(time.Second), dur(time.Second)
	}
	both := func(edits ...func(*opsv1.Operation)) func(*opsv1.Operation) {
		return func(op *opsv1.Operation) {
			for _, e := range edits {
				e(op)
			}
		}
	}
	phase := func(p opsv1.OperationPhase) func(*opsv1.Operation) {
		return func(op *opsv1.Operation) { op.Status.Phase = p }
	}
	pendingOp := func(edit func(*opsv1.Operation)) *opsv1.Operation {
		op := &opsv1.Operation{
			ObjectMeta: metav1.ObjectMeta{Name: "op", Namespace: "ns"},
			Spec:       opsv1.OperationSpec{SessionName: "s", Kind: opsv1.BackgroundToolOp},
		}
		if edit != nil {
			edit(op)
		}
		return op
	}

	cases := []struct {
		name    string
		op      *opsv1.Operation
		sess    *opsv1.OpsSession
		elapsed time.Duration // since t0
		want    lifecycle.Control
	}{
		// Requests: cancel before abort before retire, all before deadlines,
		// each only from a phase it is allowed from.
		{name: "provisioning: cancel beats abort, retire and an overdue deadline",
			op: provisioningOp(both(allRequests, overdue)), elapsed: time.Hour, want: cancelAction(str("stop it"))},
		{name: "provisioning: abort beats retire and an overdue deadline",
			op:      provisioningOp(both(allRequests, overdue, func(op *opsv1.Operation) { op.Spec.Cancel = nil })),
			elapsed: time.Hour, want: abortAction(str("mob stopping"))},
		{name: "provisioning: abort without a reason",
			op: provisioningOp(func(op *opsv1.Operation) { op.Spec.Abort = request("") }), want: abortAction(nil)},
		{name: "provisioning: retire is not allowed, the overdue deadline is carried out",
			op:      provisioningOp(both(overdue, func(op *opsv1.Operation) { op.Spec.Retire = request("") })),
			elapsed: time.Hour, want: timedOut("ProvisioningTimeout: still provisioning 1s after admission")},
		{name: "running: cancel beats retire",
			op: runningOp(allRequests), want: cancelAction(str("stop it"))},
		{name: "running: abort is not allowed, retire is carried out before an overdue deadline",
			op:      runningOp(both(allRequests, overdue, func(op *opsv1.Operation) { op.Spec.Cancel = nil })),
			elapsed: time.Hour, want: retireAction},
		{name: "running: abort alone is not allowed, nothing to do",
			op: runningOp(func(op *opsv1.Operation) { op.Spec.Abort = request("late") }), want: nothing},
		{name: "retiring: retire again is not allowed, the overdue heartbeat is carried out",
			op:      runningOp(both(overdue, phase(retiring), func(op *opsv1.Operation) { op.Spec.Retire = request("") })),
			elapsed: time.Hour, want: timedOut("HeartbeatTimeout: no progress within 1s")},
		{name: "retiring: cancel", op: runningOp(both(phase(retiring), allRequests)), want: cancelAction(str("stop it"))},
		{name: "pending: cancel", op: pendingOp(allRequests), want: cancelAction(str("stop it"))},
		{name: "unset phase is Pending: cancel", op: pendingOp(func(op *opsv1.Operation) { op.Spec.Cancel = request("") }),
			want: cancelAction(nil)},
		{name: "pending: abort and retire are not allowed, and no deadline runs",
			op: pendingOp(both(overdue, func(op *opsv1.Operation) {
				op.Spec.Abort, op.Spec.Retire = request("x"), request("")
				op.Status.Phase = pending
			})), sess: session(dur(time.Second), dur(time.Second)), elapsed: time.Hour, want: nothing},

		// Final phases: nothing, whatever is requested or overdue.
		{name: string(completed), op: runningOp(both(allRequests, overdue, phase(completed))), elapsed: time.Hour, want: nothing},
		{name: string(failed), op: runningOp(both(allRequests, overdue, phase(failed))), elapsed: time.Hour, want: nothing},
		{name: string(aborted), op: provisioningOp(both(allRequests, overdue, phase(aborted))), elapsed: time.Hour, want: nothing},
		{name: string(cancelled), op: runningOp(both(allRequests, overdue, phase(cancelled))), elapsed: time.Hour, want: nothing},
		{name: string(retired), op: runningOp(both(allRequests, overdue, phase(retired))), elapsed: time.Hour, want: nothing},
		{name: string(terminated), op: runningOp(both(allRequests, overdue, phase(terminated))), elapsed: time.Hour, want: nothing},
		{name: string(rejected), op: pendingOp(both(allRequests, overdue, phase(rejected))), elapsed: time.Hour, want: nothing},

		// The session's default against the operation's own timeout.
		{name: "own provisioning timeout wins over a shorter session default",
			op:   provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(10 * time.Second) }),
			sess: session(dur(time.Second), nil), elapsed: 4 * time.Second, want: waitFor(6 * time.Second)},
		{name: "own provisioning timeout wins over a longer session default",
			op:   provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(10 * time.Second) }),
			sess: session(dur(time.Hour), nil), elapsed: 11 * time.Second,
			want: timedOut("ProvisioningTimeout: still provisioning 10s after admission")},
		{name: "session default provisioning timeout applies when the operation has none",
			op: provisioningOp(nil), sess: session(dur(30*time.Second), dur(time.Second)), elapsed: 20 * time.Second,
			want: waitFor(10 * time.Second)},
		{name: "session default provisioning timeout, due",
			op: provisioningOp(nil), sess: session(dur(30*time.Second), nil), elapsed: 31 * time.Second,
			want: timedOut("ProvisioningTimeout: still provisioning 30s after admission")},
		{name: "own heartbeat timeout wins over the session default",
			op:   runningOp(func(op *opsv1.Operation) { op.Spec.HeartbeatTimeout = dur(time.Minute) }),
			sess: session(nil, dur(time.Second)), elapsed: 12 * time.Second, want: waitFor(50 * time.Second)},
		{name: "session default heartbeat timeout applies when the operation has none",
			op: runningOp(nil), sess: session(dur(time.Second), dur(90*time.Second)), elapsed: 2 * time.Minute,
			want: timedOut("HeartbeatTimeout: no progress within 1m30s")},
		{name: "session without defaults: no deadline",
			op: runningOp(nil), sess: session(nil, nil), elapsed: time.Hour, want: nothing},
		{name: "a zero own timeout means none, and the session default is not used",
			op:   provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(0) }),
			sess: session(dur(time.Second), nil), elapsed: time.Hour, want: nothing},
		{name: "a zero session default means none",
			op: provisioningOp(nil), sess: session(dur(0), dur(0)), elapsed: time.Hour, want: nothing},

		// A missing session: only the operation's own timeouts count.
		{name: "missing session, no own timeout: nothing",
			op: provisioningOp(nil), sess: nil, elapsed: time.Hour, want: nothing},
		{name: "missing session, own provisioning timeout not yet due",
			op:      provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(time.Minute) }),
			elapsed: 45 * time.Second, want: waitFor(15 * time.Second)},
		{name: "missing session, own heartbeat timeout due",
			op:      runningOp(func(op *opsv1.Operation) { op.Spec.HeartbeatTimeout = dur(time.Minute) }),
			elapsed: 2 * time.Minute, want: timedOut("HeartbeatTimeout: no progress within 1m0s")},
		{name: "missing session: requests are still carried out",
			op: runningOp(func(op *opsv1.Operation) { op.Spec.Retire = request("") }), want: retireAction},

		// The base each deadline counts from.
		{name: "provisioning counts from admittedAt, not from a later heartbeat",
			op: provisioningOp(func(op *opsv1.Operation) {
				op.Spec.ProvisioningTimeout = dur(10 * time.Second)
				op.Status.LastHeartbeatTime = at(9 * time.Second)
			}), elapsed: 10 * time.Second, want: timedOut("ProvisioningTimeout: still provisioning 10s after admission")},
		{name: "provisioning without admittedAt: no deadline",
			op: provisioningOp(func(op *opsv1.Operation) {
				op.Spec.ProvisioningTimeout = dur(time.Second)
				op.Status.AdmittedAt = nil
			}), elapsed: time.Hour, want: nothing},
		{name: "provisioning ignores the heartbeat timeout",
			op:      provisioningOp(func(op *opsv1.Operation) { op.Spec.HeartbeatTimeout = dur(time.Second) }),
			elapsed: time.Hour, want: nothing},
		{name: "running counts from lastHeartbeatTime, not admittedAt or startedAt",
			op: runningOp(func(op *opsv1.Operation) {
				op.Spec.HeartbeatTimeout = dur(10 * time.Second)
				op.Status.LastHeartbeatTime = at(30 * time.Second)
			}), elapsed: 35 * time.Second, want: waitFor(5 * time.Second)},
		{name: "running without lastHeartbeatTime: no deadline, even with admittedAt and startedAt",
			op: runningOp(func(op *opsv1.Operation) {
				op.Spec.HeartbeatTimeout = dur(time.Second)
				op.Status.LastHeartbeatTime = nil
			}), elapsed: time.Hour, want: nothing},
		{name: "running ignores the provisioning timeout",
			op:      runningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(time.Second) }),
			elapsed: time.Hour, want: nothing},
		{name: "retiring counts from lastHeartbeatTime",
			op:      runningOp(both(phase(retiring), func(op *opsv1.Operation) { op.Spec.HeartbeatTimeout = dur(10 * time.Second) })),
			elapsed: 3 * time.Second, want: waitFor(9 * time.Second)},

		// Not yet due: wait exactly the remainder; due at the instant it expires.
		{name: "one microsecond before the deadline",
			op:      provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(time.Minute) }),
			elapsed: time.Minute - time.Microsecond, want: waitFor(time.Microsecond)},
		{name: "at the deadline",
			op:      provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(time.Minute) }),
			elapsed: time.Minute, want: timedOut("ProvisioningTimeout: still provisioning 1m0s after admission")},
		{name: "a clock behind admission waits the whole timeout and more",
			op:      provisioningOp(func(op *opsv1.Operation) { op.Spec.ProvisioningTimeout = dur(time.Minute) }),
			elapsed: -time.Second, want: waitFor(time.Minute + time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(t0)
			clk.SetTime(clk.Now().Add(tc.elapsed))
			before := tc.op.DeepCopy()
			got := lifecycle.NextControl(tc.op, tc.sess, clk.Now())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("NextControl (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.op); diff != "" {
				t.Errorf("NextControl changed the operation (-before +after):\n%s", diff)
			}
		})
	}
}

// TestNextControlFollowsTheClock walks one operation through its deadlines
// on a fake clock: each RequeueAfter lands exactly on the deadline, and a
// heartbeat moves the heartbeat deadline.
func TestNextControlFollowsTheClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	sess := session(dur(20*time.Second), dur(time.Minute))
	op := provisioningOp(nil)

	next := lifecycle.NextControl(op, sess, clk.Now())
	if next.Do != nil || next.After != 20*time.Second {
		t.Fatalf("just admitted: %+v, want to wait 20s", next)
	}
	clk.Step(next.After - time.Millisecond)
	if next = lifecycle.NextControl(op, sess, clk.Now()); next.Do != nil || next.After != time.Millisecond {
		t.Fatalf("1ms before the deadline: %+v, want to wait 1ms", next)
	}
	clk.Step(next.After)
	if next = lifecycle.NextControl(op, sess, clk.Now()); next.Do == nil || next.Do.Call != lifecycle.FailOperation {
		t.Fatalf("at the provisioning deadline: %+v, want FailOperation", next)
	}

	// Provisioned in time instead: the heartbeat deadline runs from each heartbeat.
	op = provisioningOp(nil)
	clk.SetTime(t0.Add(5 * time.Second))
	if err := lifecycle.Apply(op, lifecycle.ProvisioningSucceeded, lifecycle.Args{}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Step(50 * time.Second)
	if next = lifecycle.NextControl(op, sess, clk.Now()); next.Do != nil || next.After != 10*time.Second {
		t.Fatalf("running, 50s after the last heartbeat: %+v, want to wait 10s", next)
	}
	if err := lifecycle.Apply(op, lifecycle.ReportProgress, lifecycle.Args{Message: "alive"}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if next = lifecycle.NextControl(op, sess, clk.Now()); next.Do != nil || next.After != time.Minute {
		t.Fatalf("right after a heartbeat: %+v, want to wait the whole minute", next)
	}
	clk.Step(time.Minute)
	next = lifecycle.NextControl(op, sess, clk.Now())
	if want := timedOut("HeartbeatTimeout: no progress within 1m0s"); !cmp.Equal(want, next) {
		t.Fatalf("a minute after the last heartbeat: %+v, want %+v", next, want)
	}
}

// TestZeroControlIsNothing: the zero Control carries out no call and waits
// for no deadline, and so is what a final operation gets.
func TestZeroControlIsNothing(t *testing.T) {
	var zero lifecycle.Control
	if zero.Do != nil || zero.After != 0 {
		t.Fatalf("zero Control = %+v, want no action and no deadline", zero)
	}
	op := runningOp(func(op *opsv1.Operation) { op.Status.Phase = completed })
	if got := lifecycle.NextControl(op, nil, t0); got != zero {
		t.Fatalf("final operation: %+v, want the zero Control", got)
	}
}
