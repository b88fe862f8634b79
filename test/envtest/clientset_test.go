package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	applyv1alpha1 "github.com/meerkat-ops/ops-operator/pkg/client/applyconfiguration/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/client/clientset/versioned"
	informers "github.com/meerkat-ops/ops-operator/pkg/client/informers/externalversions"
	listers "github.com/meerkat-ops/ops-operator/pkg/client/listers/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// opsWatch is an informer on one namespace's Operations, through the
// generated SharedInformerFactory, and a signal for each event it delivers.
type opsWatch struct {
	lister  listers.OperationNamespaceLister
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
}

func watchOperations(t *testing.T, ctx context.Context, cs versioned.Interface, ns string) *opsWatch {
	t.Helper()
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Ops().V1alpha1().Operations()
	w := &opsWatch{lister: inf.Lister().Operations(ns), changed: make(chan struct{})}
	notify := func() {
		w.mu.Lock()
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		t.Fatalf("AddEventHandler: %v", err)
	}
	ictx, cancel := context.WithCancel(ctx)
	factory.StartWithContext(ictx)
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	if res := factory.WaitForCacheSyncWithContext(ctx); res.Err != nil {
		t.Fatalf("informer cache sync: %v", res.Err)
	}
	return w
}

// waitFor waits, on informer events only (no polling of the API server),
// until the named operation in the informer's cache satisfies ok.
func (w *opsWatch) waitFor(t *testing.T, ctx context.Context, name, what string, ok func(*opsv1.Operation) bool) *opsv1.Operation {
	t.Helper()
	var last *opsv1.Operation
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		op, err := w.lister.Get(name)
		switch {
		case err == nil:
			last = op
			if ok(op) {
				return op.DeepCopy()
			}
		case !apierrors.IsNotFound(err):
			t.Fatalf("lister: %v", err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if last != nil {
				t.Fatalf("%s: waiting for %s: %v; last seen phase %q, conditions %v", name, what, ctx.Err(), last.Status.Phase, last.Status.Conditions)
			}
			t.Fatalf("%s: waiting for %s: %v; never seen", name, what, ctx.Err())
		}
	}
}

// agentCall makes an agent call on the operation with the clientset as
// pkg/opsclient does with controller-runtime: lifecycle.Apply on a fresh read,
// then one UpdateStatus (conditions included), again on a conflict with the
// controller's own writes.
func agentCall(ctx context.Context, cs versioned.Interface, ns, name string, c lifecycle.Call, a lifecycle.Args) error {
	ops := cs.OpsV1alpha1().Operations(ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		op, err := ops.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := lifecycle.Apply(op, c, a, time.Now()); err != nil {
			return err
		}
		_, err = ops.UpdateStatus(ctx, op, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("%s on %s: %w", c.Action(), name, err)
	}
	return nil
}

var microTime = regexp.MustCompile(opsv1.MicroTimePattern)

// TestGeneratedClientset drives an operation's whole lifecycle as an agent
// with only the generated clientset and an informer from the generated
// SharedInformerFactory, and cancels a queued operation with a typed
// server-side apply of its spec.
func TestGeneratedClientset(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestGeneratedClientset took %v", time.Since(start).Round(time.Millisecond)) }()
	ctx := testContext(t)
	ns := newNamespace(t)

	agentCfg, err := testenv.User(testEnv, controlplane.Agent, "clientset-agent")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := versioned.NewForConfig(agentCfg)
	if err != nil {
		t.Fatalf("NewForConfig: %v", err)
	}
	w := watchOperations(t, ctx, cs, ns)

	t.Run("lifecycle", func(t *testing.T) { checkTypedLifecycle(t, ctx, cs, w, ns) })
	t.Run("server-side apply cancels a queued operation", func(t *testing.T) { checkApplyCancel(t, ctx, cs, w, ns) })
}

// checkTypedLifecycle creates a session and an operation with the
// clientset, and drives the operation as its agent to Completed.
func checkTypedLifecycle(t *testing.T, ctx context.Context, cs versioned.Interface, w *opsWatch, ns string) {
	sess, err := cs.OpsV1alpha1().OpsSessions(ns).Create(ctx, &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Name: "typed"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create OpsSession: %v", err)
	}
	op, err := cs.OpsV1alpha1().Operations(ns).Create(ctx, &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "typed-op", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: opsv1.SchemeGroupVersion.String(), Kind: kindOpsSession,
			Name: sess.Name, UID: sess.UID, Controller: ptr.To(true),
		}}},
		Spec: opsv1.OperationSpec{SessionName: sess.Name, Kind: opsv1.BackgroundToolOp, DisplayName: "typed client"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Operation: %v", err)
	}
	if op.Status.Phase != "" {
		t.Fatalf("a new operation has phase %q, want none yet", op.Status.Phase)
	}

	// The manager admits it; the informer sees that.
	admitted := w.waitFor(t, ctx, op.Name, "Provisioning", func(o *opsv1.Operation) bool {
		return o.Status.Phase == opsv1.PhaseProvisioning
	})
	if admitted.Status.AdmittedAt == nil {
		t.Errorf("admitted without status.admittedAt: %+v", admitted.Status)
	}

	if err := agentCall(ctx, cs, ns, op.Name, lifecycle.ProvisioningSucceeded, lifecycle.Args{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, ctx, op.Name, "Running", func(o *opsv1.Operation) bool { return o.Status.Phase == opsv1.PhaseRunning })

	result := &opsv1.OperationResult{Content: "indexed 42 files", DurationMs: 1234, TokensUsed: 7}
	if err := agentCall(ctx, cs, ns, op.Name, lifecycle.CompleteOperation, lifecycle.Args{Result: result}); err != nil {
		t.Fatal(err)
	}
	done := w.waitFor(t, ctx, op.Name, "Completed", func(o *opsv1.Operation) bool { return o.Status.Phase == opsv1.PhaseCompleted })
	st := done.Status
	if st.Outcome == nil || st.Outcome.Type != opsv1.PhaseCompleted || st.Outcome.Result == nil || *st.Outcome.Result != *result {
		t.Errorf("outcome = %+v, want Completed with result %+v", st.Outcome, result)
	}
	if st.CompletedAt == nil || st.StartedAt == nil || st.CompletedAt.Before(st.StartedAt) {
		t.Errorf("startedAt %v, completedAt %v: want both, in order", st.StartedAt, st.CompletedAt)
	}
	for _, c := range []string{opsv1.ConditionTerminal, opsv1.ConditionReady} {
		if !meta.IsStatusConditionTrue(st.Conditions, c) {
			t.Errorf("condition %s not True on the Completed operation: %v", c, st.Conditions)
		}
	}
	checkStoredTimes(t, ctx, cs, ns, op.Name)
}

// checkStoredTimes: the stored timestamps of a Completed operation that
// never sent a heartbeat are MicroTime, six fractional digits.
func checkStoredTimes(t *testing.T, ctx context.Context, cs versioned.Interface, ns, name string) {
	t.Helper()
	raw, err := cs.OpsV1alpha1().RESTClient().Get().Namespace(ns).Resource("operations").Name(name).DoRaw(ctx)
	if err != nil {
		t.Fatalf("raw GET: %v", err)
	}
	var stored struct {
		Status map[string]json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	for _, f := range timeFields {
		if f == "lastHeartbeatTime" {
			continue
		}
		var s string
		if err := json.Unmarshal(stored.Status[f], &s); err != nil || !microTime.MatchString(s) {
			t.Errorf("stored status.%s = %s: want an RFC 3339 time with six fractional digits", f, stored.Status[f])
		}
	}
}

// checkApplyCancel queues an operation in a session with no slot and
// cancels it with a typed server-side apply of spec.cancel, as the editor.
func checkApplyCancel(t *testing.T, ctx context.Context, cs versioned.Interface, w *opsWatch, ns string) {
	const session, reason = "queue-none", "not needed"
	if _, err := cs.OpsV1alpha1().OpsSessions(ns).Create(ctx, &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Name: session},
		Spec:       opsv1.OpsSessionSpec{MaxConcurrent: ptr.To[int32](0), AdmissionPolicy: opsv1.AdmissionQueue},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create OpsSession: %v", err)
	}
	op, err := cs.OpsV1alpha1().Operations(ns).Create(ctx, &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "queued-op"},
		Spec:       opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Operation: %v", err)
	}
	w.waitFor(t, ctx, op.Name, "Pending, queued", func(o *opsv1.Operation) bool {
		c := meta.FindStatusCondition(o.Status.Conditions, opsv1.ConditionReconciling)
		return lifecycle.Normalize(o.Status.Phase) == opsv1.PhasePending && c != nil && c.Status == metav1.ConditionTrue && c.Reason == opsv1.ReasonQueued
	})

	// The agent role has no patch on operations: cancelling through
	// spec is a person's (or a GitOps tool's) move, so the editor applies.
	editorCfg, err := testenv.User(testEnv, controlplane.Editor, "clientset-editor")
	if err != nil {
		t.Fatal(err)
	}
	editor, err := versioned.NewForConfig(editorCfg)
	if err != nil {
		t.Fatal(err)
	}
	const manager = "clientset-test"
	applied, err := editor.OpsV1alpha1().Operations(ns).Apply(ctx,
		applyv1alpha1.Operation(op.Name, ns).WithSpec(applyv1alpha1.OperationSpec().
			WithCancel(applyv1alpha1.ControlRequest().WithReason(reason))),
		metav1.ApplyOptions{FieldManager: manager, Force: true})
	if err != nil {
		t.Fatalf("server-side apply of spec.cancel: %v", err)
	}
	if applied.Spec.Cancel == nil || ptr.Deref(applied.Spec.Cancel.Reason, "") != reason ||
		applied.Spec.SessionName != session || applied.Spec.Kind != opsv1.BackgroundToolOp {
		t.Fatalf("after apply, spec = %+v: want cancel added and the rest kept", applied.Spec)
	}
	// The structured-merge schema in the apply configurations lets the
	// manager read back exactly what it owns: spec.cancel and nothing else.
	own, err := applyv1alpha1.ExtractOperation(applied, manager)
	if err != nil {
		t.Fatalf("ExtractOperation: %v", err)
	}
	if own.Spec == nil || own.Spec.Cancel == nil || ptr.Deref(own.Spec.Cancel.Reason, "") != reason ||
		own.Spec.SessionName != nil || own.Spec.Kind != nil {
		b, _ := json.Marshal(own)
		t.Errorf("fields owned by %s: %s; want spec.cancel only", manager, b)
	}

	cancelled := w.waitFor(t, ctx, op.Name, "Cancelled", func(o *opsv1.Operation) bool { return o.Status.Phase == opsv1.PhaseCancelled })
	if o := cancelled.Status.Outcome; o == nil || o.Type != opsv1.PhaseCancelled || ptr.Deref(o.Reason, "") != reason {
		t.Errorf("outcome = %+v, want Cancelled with reason %q", o, reason)
	}
	if !meta.IsStatusConditionTrue(cancelled.Status.Conditions, opsv1.ConditionTerminal) {
		t.Errorf("Terminal not True on the Cancelled operation: %v", cancelled.Status.Conditions)
	}
}
