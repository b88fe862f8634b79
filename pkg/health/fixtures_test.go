package health

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// t0 is the fixtures' fixed clock: every step of a fixture happens one
// second after the previous one, so a fixture is the same on every run.
var t0 = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const (
	namespace   = "agents"
	sessionName = "demo-session"
)

// Operation fixture names: the rows of the Operation tables.
const (
	opNoStatus                 = "Pending, status not written yet"
	opWaitingForAdmission      = "Pending, waiting for admission"
	opQueued                   = "Pending, queued (Queue policy)"
	opSessionMissing           = "Pending, session missing"
	opQueuedThenSessionDeleted = "Pending, queued, then session deleted"
	opSessionMissingThenQueued = "Pending, session missing, then created (queued)"
	opProvisioning             = "Provisioning"
	opRunning                  = "Running"
	opCancelNotObserved        = "Running, cancel not yet observed"
	opRetiring                 = "Retiring"
	opCompleted                = "Completed"
	opCompletedThenEdited      = "Completed, spec edited afterwards"
	opFailed                   = "Failed"
	opAborted                  = "Aborted"
	opCancelled                = "Cancelled"
	opRetired                  = "Retired"
	opTerminated               = "Terminated"
	opRejected                 = "Rejected"
)

// OpsSession fixture names: the rows of the OpsSession tables.
const (
	sessionNoStatus    = "status not written yet"
	sessionReady       = "ready"
	sessionSpecEdited  = "spec edited, not yet observed"
	sessionTerminating = "terminating (a termination write failed)"
	sessionTerminated  = "terminated"
	sessionDeleting    = "being deleted (finalizer terminating operations)"
)

// fixture is one object in one state, as the API server would return it.
type fixture struct {
	name string // the row of the tables
	obj  *unstructured.Unstructured
}

// clock hands out t0, t0+1s, t0+2s, ...
type clock struct{ n int }

func (c *clock) next() time.Time { c.n++; return t0.Add(time.Duration(c.n) * time.Second) }

func newOperation(name string) *opsv1.Operation {
	return &opsv1.Operation{
		TypeMeta: metav1.TypeMeta{APIVersion: opsv1.GroupVersion.String(), Kind: "Operation"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace, UID: types.UID("uid-" + name),
			Generation: 1, ResourceVersion: "1",
			CreationTimestamp: metav1.NewTime(t0),
			Annotations:       map[string]string{opsv1.AnnotationCreatedAt: t0.Add(123456 * time.Microsecond).Format(time.RFC3339Nano)},
		},
		Spec: opsv1.OperationSpec{SessionName: sessionName, Kind: opsv1.BackgroundToolOp, DisplayName: name},
	}
}

// step is one thing that happens to an Operation: a lifecycle call through
// lifecycle.Apply, a condition update the controller writes, or a spec edit.
type step func(t *testing.T, op *opsv1.Operation, now time.Time)

func call(c lifecycle.Call, a lifecycle.Args) step {
	return func(t *testing.T, op *opsv1.Operation, now time.Time) {
		t.Helper()
		if err := lifecycle.Apply(op, c, a, now); err != nil {
			t.Fatalf("fixture %s: %s: %v", op.Name, c, err)
		}
	}
}

// specEdit changes the spec as a user would; the API server bumps generation.
func specEdit(edit func(*opsv1.OperationSpec)) step {
	return func(_ *testing.T, op *opsv1.Operation, _ time.Time) {
		edit(&op.Spec)
		op.Generation++
	}
}

func setConditions(_ *testing.T, op *opsv1.Operation, now time.Time) {
	lifecycle.SetConditions(op, now)
}
func setQueued(_ *testing.T, op *opsv1.Operation, now time.Time) { lifecycle.SetQueued(op, 2, now) }
func setSessionMissing(_ *testing.T, op *opsv1.Operation, now time.Time) {
	lifecycle.SetSessionMissing(op, now)
}

var (
	admit   = call(lifecycle.Admit, lifecycle.Args{})
	started = call(lifecycle.ProvisioningSucceeded, lifecycle.Args{})
	// A user's cancel, retire or abort is a spec edit that the controller
	// then carries out with the matching call, as NextControl decides.
	cancelRequested = specEdit(func(s *opsv1.OperationSpec) { s.Cancel = &opsv1.ControlRequest{Reason: ptr.To("not needed")} })
	retireRequested = specEdit(func(s *opsv1.OperationSpec) { s.Retire = &opsv1.ControlRequest{} })
	abortRequested  = specEdit(func(s *opsv1.OperationSpec) { s.Abort = &opsv1.ControlRequest{Reason: ptr.To("mob stopping")} })
)

// operationFixtures are an Operation in every phase, and the in-between
// states a GitOps tool can see, each built by pkg/lifecycle the way the
// controller and the agents' client build them.
func operationFixtures(t *testing.T) []fixture {
	t.Helper()
	cases := []struct {
		name  string
		steps []step
	}{
		// As created: the API server drops status on create, and nothing
		// writes it until the session admits (or queues, or rejects) it.
		{opNoStatus, nil},
		{opWaitingForAdmission, []step{setConditions}},
		{opQueued, []step{setQueued}},
		{opSessionMissing, []step{setSessionMissing}},
		{opQueuedThenSessionDeleted, []step{setQueued, setSessionMissing}},
		{opSessionMissingThenQueued, []step{setSessionMissing, setQueued}},
		{opProvisioning, []step{admit}},
		{opRunning, []step{admit, started}},
		{opCancelNotObserved, []step{admit, started, cancelRequested}},
		{opRetiring, []step{admit, started, retireRequested, call(lifecycle.RequestRetire, lifecycle.Args{})}},
		{opCompleted, []step{admit, started, call(lifecycle.CompleteOperation, lifecycle.Args{Result: &opsv1.OperationResult{Content: "done", DurationMs: 42}})}},
		{opCompletedThenEdited, []step{admit, started, call(lifecycle.CompleteOperation, lifecycle.Args{}), cancelRequested}},
		{opFailed, []step{admit, started, call(lifecycle.FailOperation, lifecycle.Args{Error: "tool exited with status 2"})}},
		{opAborted, []step{admit, abortRequested, call(lifecycle.AbortProvisioning, lifecycle.Args{Reason: ptr.To("mob stopping")})}},
		{opCancelled, []step{admit, started, cancelRequested, call(lifecycle.CancelOperation, lifecycle.Args{Reason: ptr.To("not needed")})}},
		{opRetired, []step{admit, started, retireRequested, call(lifecycle.RequestRetire, lifecycle.Args{}), call(lifecycle.MarkRetired, lifecycle.Args{})}},
		{opTerminated, []step{admit, started, call(lifecycle.TerminateOwner, lifecycle.Args{Reason: ptr.To("mob disbanded")})}},
		{opRejected, []step{call(lifecycle.Reject, lifecycle.Args{Rejection: &opsv1.Rejection{
			Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr.To[int32](2), Active: ptr.To[int32](2)}})}},
	}
	out := make([]fixture, 0, len(cases))
	for i, c := range cases {
		op := newOperation(fmt.Sprintf("op-%02d", i))
		clk := &clock{}
		for _, s := range c.steps {
			s(t, op, clk.next())
		}
		out = append(out, fixture{name: c.name, obj: toUnstructured(t, op)})
	}
	return out
}

// Operation phases each fixture must cover, so a phase added to the API
// without a row fails here.
func TestOperationFixturesCoverEveryPhase(t *testing.T) {
	seen := map[opsv1.OperationPhase]bool{}
	for _, f := range operationFixtures(t) {
		p, _, _ := unstructured.NestedString(f.obj.Object, "status", "phase")
		seen[lifecycle.Normalize(opsv1.OperationPhase(p))] = true
	}
	for _, p := range lifecycle.Phases {
		if !seen[p] {
			t.Errorf("no fixture in phase %s", p)
		}
	}
}

func newSession(name string) *opsv1.OpsSession {
	return &opsv1.OpsSession{
		TypeMeta: metav1.TypeMeta{APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSession"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace, UID: types.UID("uid-" + name),
			Generation: 1, ResourceVersion: "1",
			CreationTimestamp: metav1.NewTime(t0),
			Finalizers:        []string{opsv1.FinalizerTerminate},
		},
		Spec: opsv1.OpsSessionSpec{
			MaxConcurrent: ptr.To[int32](2), MaxCompleted: ptr.To[int32](256),
			AdmissionPolicy: opsv1.AdmissionQueue,
		},
	}
}

// reconcileSession writes the status one OpsSession reconcile pass writes:
// the plan from pkg/admission for the session's operations, and
// admission.SetSessionStatus's conditions and counts. terminated is what the
// reconciler passes: the termination was carried out without a failed write.
func reconcileSession(sess *opsv1.OpsSession, ops []*opsv1.Operation, terminated bool, now time.Time) {
	plan := admission.Decide(admission.Input{Session: sess, Ops: ops,
		TerminationDone: meta.IsStatusConditionTrue(sess.Status.Conditions, opsv1.ConditionTerminated)})
	admission.SetSessionStatus(sess, plan, terminated, now)
}

// sessionFixtures are an OpsSession in each state a GitOps tool can see.
func sessionFixtures(t *testing.T) []fixture {
	t.Helper()
	running := newOperation("member")
	clk := &clock{}
	for _, s := range []step{admit, started} {
		s(t, running, clk.next())
	}
	ops := []*opsv1.Operation{running}
	terminate := func(s *opsv1.OpsSession) {
		s.Spec.Termination = &opsv1.Termination{Reason: "mob disbanded"}
		s.Generation++
	}

	var out []fixture
	add := func(name string, s *opsv1.OpsSession) {
		out = append(out, fixture{name: name, obj: toUnstructured(t, s)})
	}

	// As created: the controller adds its finalizer before the first status.
	add(sessionNoStatus, newSession("s-new"))

	ready := newSession("s-ready")
	reconcileSession(ready, ops, false, clk.next())
	add(sessionReady, ready)

	behind := newSession("s-behind")
	reconcileSession(behind, ops, false, clk.next())
	behind.Spec.MaxConcurrent = ptr.To[int32](4) // a person re-limits it
	behind.Generation++
	add(sessionSpecEdited, behind)

	// terminate_owner asked for, and one pass carried it out but a write
	// failed: the reconciler passes terminated=false.
	terminating := newSession("s-terminating")
	reconcileSession(terminating, ops, false, clk.next())
	terminate(terminating)
	reconcileSession(terminating, ops, false, clk.next())
	add(sessionTerminating, terminating)

	terminated := newSession("s-terminated")
	reconcileSession(terminated, ops, false, clk.next())
	terminate(terminated)
	reconcileSession(terminated, ops, true, clk.next())
	add(sessionTerminated, terminated)

	deleting := newSession("s-deleting")
	reconcileSession(deleting, ops, false, clk.next())
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(clk.next()))
	add(sessionDeleting, deleting)
	return out
}

// toUnstructured converts obj as the API server would serve it: int64
// numbers, no fields the JSON tags omit, and no status at all when nothing
// has written one (a create drops status; the Go types would send "{}").
func toUnstructured(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatalf("to unstructured: %v", err)
	}
	if st, ok := m["status"].(map[string]any); ok && len(st) == 0 {
		delete(m, "status")
	}
	return &unstructured.Unstructured{Object: m}
}

// conditionSummary lists a fixture's generations and conditions in one line,
// for failure messages and the README tables.
func conditionSummary(f fixture) string {
	gen, _, _ := unstructured.NestedInt64(f.obj.Object, "metadata", "generation")
	st, ok := f.obj.Object["status"].(map[string]any)
	if !ok {
		return fmt.Sprintf("generation %d, no status", gen)
	}
	observed, found, _ := unstructured.NestedInt64(st, "observedGeneration")
	s := fmt.Sprintf("generation %d, observedGeneration ", gen)
	if found {
		s += fmt.Sprint(observed)
	} else {
		s += "unset"
	}
	if f.obj.GetDeletionTimestamp() != nil {
		s += ", deletionTimestamp set"
	}
	conds, _, _ := unstructured.NestedSlice(st, "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		s += fmt.Sprintf(", %v=%v (%v)", m["type"], m["status"], m["reason"])
	}
	return s
}
