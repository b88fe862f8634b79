package envtest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// TestRawFinalWritesGetTrueConditions: a writer that sets a final phase
// without touching the conditions (kubectl, an agent in another language)
// leaves them saying Running; the controller brings them in line within
// seconds, so `kubectl wait --for=condition=Terminal` returns.
func TestRawFinalWritesGetTrueConditions(t *testing.T) {
	ctx := testContext(t)
	now := `"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"`
	cases := []struct {
		phase   opsv1.OperationPhase
		from    opsv1.OperationPhase // Running, Provisioning or Pending
		writer  client.Client
		outcome string
		ready   bool
	}{
		{opsv1.PhaseCompleted, opsv1.PhaseRunning, agent, `{"type":"Completed","result":{"content":"raw"}}`, true},
		{opsv1.PhaseFailed, opsv1.PhaseRunning, agent, `{"type":"Failed","error":"raw failure"}`, false},
		{opsv1.PhaseCancelled, opsv1.PhaseRunning, agent, `{"type":"Cancelled"}`, true},
		{opsv1.PhaseRetired, opsv1.PhaseRunning, agent, `{"type":"Retired"}`, true},
		{opsv1.PhaseAborted, opsv1.PhaseProvisioning, agent, `{"type":"Aborted"}`, true},
		// Only the controller's identity may make these two moves at all.
		{opsv1.PhaseTerminated, opsv1.PhaseRunning, controllerIdentity, `{"type":"Terminated","reason":"raw"}`, true},
		{opsv1.PhaseRejected, opsv1.PhasePending, controllerIdentity, "", false},
	}
	for _, tc := range cases {
		t.Run(string(tc.phase), func(t *testing.T) {
			g := NewWithT(t)
			sc := opsclient.SessionConfig{}
			if tc.from == opsv1.PhasePending {
				sc = opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](0), AdmissionPolicy: opsv1.AdmissionQueue}
			}
			_, reg := newRegistry(t, sc)
			ns := reg.Namespace()
			name := opsclient.NewOperationID()
			if tc.from == opsv1.PhasePending {
				createOp(ctx, g, ns, name, reg.Session())
				g.Eventually(func() string { return trueReason(getOp(ctx, ns, name)(), opsv1.ConditionReconciling) }).Should(Equal(opsv1.ReasonQueued))
			} else {
				g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: name, Kind: opsv1.BackgroundToolOp})).To(Succeed())
				if tc.from == opsv1.PhaseRunning {
					g.Expect(reg.ProvisioningSucceeded(ctx, name)).To(Succeed())
				}
			}
			body := `{"status":{"phase":"` + string(tc.phase) + `","completedAt":` + now + `,"outcome":` + tc.outcome + `}}`
			if tc.phase == opsv1.PhaseRejected {
				body = `{"status":{"phase":"Rejected","rejection":{"reason":"OwnerTerminated"}}}`
			}
			op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			g.Expect(statusPatch(ctx, tc.writer, op, types.MergePatchType, body)).To(Succeed())

			out, err := kubectlRun(ctx, ns, "wait", "--for=condition=Terminal", "operation/"+name, "--timeout=30s")
			g.Expect(err).NotTo(HaveOccurred(), out)
			got := getOp(ctx, ns, name)()
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, opsv1.ConditionReady)).To(Equal(tc.ready))
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, opsv1.ConditionStalled)).To(Equal(!tc.ready))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, opsv1.ConditionReconciling)).To(BeNil())
		})
	}
}

// TestServerSideApplyTwiceUnderTwoFieldManagers: the samples applied again
// and again, as Argo CD and Flux would, never conflict: no controller write
// owns a spec field (the finalizer is patched alone).
func TestServerSideApplyTwiceUnderTwoFieldManagers(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	samples, err := filepath.Abs(filepath.Join("..", "..", "config", "samples"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, manager := range []string{"argocd-controller", "kustomize-controller", "argocd-controller", "kustomize-controller"} {
		out, err := kubectlRun(ctx, ns, "apply", "--server-side", "--field-manager="+manager, "-f", samples)
		g.Expect(err).NotTo(HaveOccurred(), "%s: %s", manager, out)
		// Let the manager add its finalizer and admit before the next apply.
		g.Eventually(func() []string {
			s := &opsv1.OpsSession{}
			_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: sampleSession}, s)
			return s.Finalizers
		}).Should(ContainElement(opsv1.FinalizerTerminate))
		g.Eventually(phaseOf(ctx, ns, "index-repository")).Should(Equal(opsv1.PhaseProvisioning))
	}
	s := &opsv1.OpsSession{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: sampleSession}, s)).To(Succeed())
	g.Expect(s.Spec.HeartbeatTimeout.Duration).To(Equal(10 * time.Minute))
}

// TestGitOpsRemovesControlRequestAfterItTookEffect: once the operation is
// final, removing its cancel request (as a GitOps sync does when it is
// removed from Git) is allowed and the outcome stays; before that it is
// refused.
func TestGitOpsRemovesControlRequestAfterItTookEffect(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns := reg.Namespace()
	hold := opsclient.NewOperationID()
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: hold, Kind: opsv1.BackgroundToolOp})).To(Succeed())
	// Before it is final: a retire request (Running only) on a Provisioning
	// operation stays pending, and cannot be removed.
	op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: hold, Namespace: ns}}
	g.Expect(k8s.Patch(ctx, op, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retire":{}}}`)))).To(Succeed())
	err := k8s.Patch(ctx, op, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retire":null}}`)))
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.retire is write-once: it cannot be changed, nor removed before the operation is final"))

	g.Expect(k8s.Patch(ctx, op, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":{"reason":"from git"}}}`)))).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, hold)).Should(Equal(opsv1.PhaseCancelled))
	g.Expect(k8s.Patch(ctx, op, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":null,"retire":null}}`)))).To(Succeed())
	got := getOp(ctx, ns, hold)()
	g.Expect(got.Spec.Cancel).To(BeNil())
	g.Expect(got.Status.Outcome.Type).To(Equal(opsv1.PhaseCancelled))
	g.Expect(*got.Status.Outcome.Reason).To(Equal("from git"))
	// The conditions follow the new generation (kstatus checks it).
	g.Eventually(func() int64 {
		c := meta.FindStatusCondition(getOp(ctx, ns, hold)().Status.Conditions, opsv1.ConditionTerminal)
		return c.ObservedGeneration
	}).Should(Equal(got.Generation))
}

// TestDeclaredOperationsAreNotEvicted: an operation a GitOps tool keeps in
// Git is never evicted (the tool would re-create it and it would run
// again); others are, as before.
func TestDeclaredOperationsAreNotEvicted(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](0)})
	ns := reg.Namespace()
	declared := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "from-git", Namespace: ns,
		Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "agents:ops.meerkat.dev/Operation:" + ns + "/from-git"}},
		Spec: opsv1.OperationSpec{SessionName: reg.Session(), Kind: opsv1.BackgroundToolOp}}
	g.Expect(k8s.Create(ctx, declared)).To(Succeed())
	createOp(ctx, g, ns, "ad-hoc", reg.Session())
	for _, name := range []string{"from-git", "ad-hoc"} {
		g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.PhaseProvisioning))
		g.Expect(k8s.Patch(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":{}}}`)))).To(Succeed())
	}
	g.Eventually(phaseOf(ctx, ns, "ad-hoc")).Should(BeEquivalentTo("<absent>"), "maxCompleted 0 evicts the ad-hoc one")
	g.Consistently(phaseOf(ctx, ns, "from-git"), 2*time.Second).Should(Equal(opsv1.PhaseCancelled))
}

// TestTerminateOwnerTwiceReturnsAtOnce: asking again, with the same or
// another reason, returns from the object it has; and registering in the
// terminated session is refused with its own error.
func TestTerminateOwnerTwiceReturnsAtOnce(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	g.Expect(reg.TerminateOwner(ctx, "first")).To(Succeed())
	for _, reason := range []string{"first", "another"} {
		// A short deadline: the answer must not wait on a watch event.
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		g.Expect(reg.TerminateOwner(short, reason)).To(Succeed())
		cancel()
	}
	s := &opsv1.OpsSession{}
	g.Expect(agent.Get(ctx, client.ObjectKey{Namespace: reg.Namespace(), Name: reg.Session()}, s)).To(Succeed())
	g.Expect(s.Spec.Termination.Reason).To(Equal("first"))

	err := reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: "late", Kind: opsv1.BackgroundToolOp})
	var terminated *opsclient.OwnerTerminatedError
	g.Expect(errors.As(err, &terminated)).To(BeTrue(), "got %v", err)
	g.Expect(err).To(MatchError(opsclient.ErrOwnerTerminated))
	g.Expect(err.Error()).To(Equal("owner session terminated: " + reg.Session() + " was terminated, so operation late was not registered"))
}

// TestRefusedAdmissionBacksOff: a write the API server keeps refusing (here
// an extra admission policy refuses every status write to one operation)
// goes back to the workqueue's exponential backoff, surfaces once as a
// Warning event with the API server's message, and leaves the manager idle.
func TestRefusedAdmissionBacksOff(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "test-refuse-status"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{opsv1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: []string{"operations/status"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "!has(object.metadata.labels) || !('test.ops.meerkat.dev/refuse' in object.metadata.labels)",
				Message:    "test policy: this operation's status may not be written",
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-refuse-status"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	for _, o := range []client.Object{policy, binding} {
		g.Expect(admin.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { _ = admin.Delete(context.Background(), o) })
	}
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns := reg.Namespace()
	// The API server takes a moment to enforce a new policy: probe with an
	// agent's harmless status write on a labelled operation of no session.
	probe := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns,
		Labels: map[string]string{"test.ops.meerkat.dev/refuse": "true"}},
		Spec: opsv1.OperationSpec{SessionName: "no-such-session", Kind: opsv1.BackgroundToolOp}}
	g.Expect(agent.Create(ctx, probe)).To(Succeed())
	g.Eventually(func() error {
		return statusPatch(ctx, agent, probe, types.MergePatchType, `{"status":{"progress":{"message":"probe"}}}`)
	}, 30*time.Second).Should(MatchError(ContainSubstring("test policy")))
	refused := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "refused", Namespace: ns,
		Labels: map[string]string{"test.ops.meerkat.dev/refuse": "true"}},
		Spec: opsv1.OperationSpec{SessionName: reg.Session(), Kind: opsv1.BackgroundToolOp}}
	g.Expect(k8s.Create(ctx, refused)).To(Succeed())
	g.Eventually(eventReasons(ctx, ns, "refused"), 30*time.Second).Should(ContainElement("WriteRefused"))

	before, err := counterTotal("controller_runtime_reconcile_total")
	g.Expect(err).NotTo(HaveOccurred())
	cpu := cpuTime()
	time.Sleep(20 * time.Second)
	after, err := counterTotal("controller_runtime_reconcile_total")
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("while refused: %.0f reconciles in 20 s (%.0f per minute), %v of CPU in this process", after-before, (after-before)*3, cpuTime()-cpu)
	// A fixed 20 ms requeue would be about 1,000 in 20 s.
	g.Expect(after - before).To(BeNumerically("<", 40))
	var list corev1.EventList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	for _, e := range list.Items {
		if e.Reason == "WriteRefused" {
			g.Expect(e.Message).To(ContainSubstring("test policy: this operation's status may not be written"))
		}
	}
	// Other operations of the session are not held up.
	id := opsclient.NewOperationID()
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp})).To(Succeed())
}
