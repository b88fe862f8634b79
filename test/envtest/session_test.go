package envtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

func getOp(ctx context.Context, ns, name string) func() *opsv1.Operation {
	return func() *opsv1.Operation {
		op := &opsv1.Operation{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, op); err != nil {
			return nil
		}
		return op
	}
}

func phaseOf(ctx context.Context, ns, name string) func() opsv1.OperationPhase {
	return func() opsv1.OperationPhase {
		if op := getOp(ctx, ns, name)(); op != nil {
			return lifecycle.Normalize(op.Status.Phase)
		}
		return "<absent>"
	}
}

func createOp(ctx context.Context, g Gomega, ns, name, session string) {
	op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp, DisplayName: name}}
	g.Expect(k8s.Create(ctx, op)).To(Succeed())
}

func patchSession(ctx context.Context, g Gomega, ns, name string, mutate func(*opsv1.OpsSession)) {
	s := &opsv1.OpsSession{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	patch := client.MergeFrom(s.DeepCopy())
	mutate(s)
	g.Expect(k8s.Patch(ctx, s, patch)).To(Succeed())
}

// TestQueueRaiseAndLowerMaxConcurrent: raising the limit admits queued
// operations at once; lowering it stops nothing that runs.
func TestQueueRaiseAndLowerMaxConcurrent(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1), AdmissionPolicy: opsv1.AdmissionQueue})
	ns, session := reg.Namespace(), reg.Session()
	for i := range 4 {
		createOp(ctx, g, ns, fmt.Sprintf("q-%d", i), session)
		time.Sleep(5 * time.Millisecond) // distinct creation order for FIFO
	}
	g.Eventually(phaseOf(ctx, ns, "q-0")).Should(Equal(opsv1.PhaseProvisioning))
	g.Eventually(func() string {
		op := getOp(ctx, ns, "q-3")()
		if c := meta.FindStatusCondition(op.Status.Conditions, opsv1.ConditionReconciling); c != nil {
			return c.Reason
		}
		return ""
	}).Should(Equal(opsv1.ReasonQueued))
	g.Expect(phaseOf(ctx, ns, "q-1")()).To(Equal(opsv1.PhasePending))

	patchSession(ctx, g, ns, session, func(s *opsv1.OpsSession) { s.Spec.MaxConcurrent = ptr.To[int32](3) })
	g.Eventually(phaseOf(ctx, ns, "q-1")).Should(Equal(opsv1.PhaseProvisioning))
	g.Eventually(phaseOf(ctx, ns, "q-2")).Should(Equal(opsv1.PhaseProvisioning))
	g.Consistently(phaseOf(ctx, ns, "q-3"), 300*time.Millisecond).Should(Equal(opsv1.PhasePending), "FIFO: the newest waits")

	patchSession(ctx, g, ns, session, func(s *opsv1.OpsSession) { s.Spec.MaxConcurrent = ptr.To[int32](1) })
	for _, id := range []string{"q-0", "q-1", "q-2"} {
		g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed(), "lowering the limit stops nothing")
	}
	g.Expect(reg.CompleteOperation(ctx, "q-0", opsv1.OperationResult{})).To(Succeed())
	g.Expect(reg.CompleteOperation(ctx, "q-1", opsv1.OperationResult{})).To(Succeed())
	g.Consistently(phaseOf(ctx, ns, "q-3"), 300*time.Millisecond).Should(Equal(opsv1.PhasePending), "still 1 active of 1")
	g.Expect(reg.CompleteOperation(ctx, "q-2", opsv1.OperationResult{})).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "q-3")).Should(Equal(opsv1.PhaseProvisioning))
}

// TestRejectedOperationExplainsItself: a kubectl-created operation over the
// limit of a Reject session shows why, with the limit and the active count.
func TestRejectedOperationExplainsItself(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1)})
	ns, session := reg.Namespace(), reg.Session()
	createOp(ctx, g, ns, "first", session)
	g.Eventually(phaseOf(ctx, ns, "first")).Should(Equal(opsv1.PhaseProvisioning))
	createOp(ctx, g, ns, "second", session)
	g.Eventually(phaseOf(ctx, ns, "second")).Should(Equal(opsv1.PhaseRejected))
	op := getOp(ctx, ns, "second")()
	g.Expect(op.Status.Rejection).To(Equal(&opsv1.Rejection{Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr.To[int32](1), Active: ptr.To[int32](1)}))
	c := meta.FindStatusCondition(op.Status.Conditions, opsv1.ConditionStalled)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.Reason).To(Equal("MaxConcurrentExceeded"))
	g.Expect(c.Message).To(ContainSubstring("limit 1, active 1"))
	g.Expect(meta.IsStatusConditionTrue(op.Status.Conditions, opsv1.ConditionTerminal)).To(BeTrue())
	g.Eventually(eventReasons(ctx, ns, "second")).Should(ContainElement("Rejected"))
}

// TestOperationWithoutSessionWaits: an Operation naming a missing session
// gets a clear condition and is admitted once the session appears.
func TestOperationWithoutSessionWaits(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	createOp(ctx, g, ns, "orphan", "later")
	g.Eventually(func() string {
		op := getOp(ctx, ns, "orphan")()
		if c := meta.FindStatusCondition(op.Status.Conditions, opsv1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
			return c.Reason + ": " + c.Message
		}
		return ""
	}).Should(HavePrefix(opsv1.ReasonSessionNotFound + `: OpsSession "later" does not exist`))
	g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns}})).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "orphan")).Should(Equal(opsv1.PhaseProvisioning))
	g.Expect(meta.IsStatusConditionTrue(getOp(ctx, ns, "orphan")().Status.Conditions, opsv1.ConditionStalled)).To(BeFalse())
}

// TestDeletingSessionTerminatesFirst: the finalizer terminates operations,
// so watchers get an outcome, before owner references cascade the delete.
func TestDeletingSessionTerminatesFirst(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()
	spec := backgroundSpec("doomed")
	g.Expect(reg.RegisterOperation(ctx, spec)).To(Succeed())
	w, err := reg.RegisterWatcher(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	createOp(ctx, g, ns, "unowned", session) // kubectl-made, no owner reference

	g.Expect(k8s.Delete(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: session, Namespace: ns}})).To(Succeed())
	g.Expect(w.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseTerminated, Reason: ptr.To("session deleted")}))
	g.Eventually(func() bool {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: session}, &opsv1.OpsSession{})
		return apierrors.IsNotFound(err)
	}).Should(BeTrue())
	g.Eventually(phaseOf(ctx, ns, "unowned")).Should(Equal(opsv1.OperationPhase("<absent>")))
}

// TestDeadlines: a deadline falls due and is carried out end to end. The
// controller waits for it (RequeueAfter), fails the operation with a reason
// naming the timeout, and sends TimedOut. When each deadline falls due
// (request precedence, session defaults, the heartbeat base) is
// lifecycle.NextControl's table test, on a fake clock.
func TestDeadlines(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns := reg.Namespace()

	stuck := backgroundSpec("stuck")
	stuck.ProvisioningTimeout = 50 * time.Millisecond
	g.Expect(reg.RegisterOperation(ctx, stuck)).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, stuck.ID)).WithTimeout(15 * time.Second).Should(Equal(opsv1.PhaseFailed))
	op := getOp(ctx, ns, stuck.ID)()
	g.Expect(op.Status.Outcome).NotTo(BeNil())
	g.Expect(op.Status.Outcome.Error).To(HavePrefix("ProvisioningTimeout: still provisioning 50ms after admission"))
	g.Eventually(eventReasons(ctx, ns, stuck.ID)).WithTimeout(15 * time.Second).Should(ContainElement("TimedOut"))
}

// TestSessionStatusAndMetrics: the session reports observedGeneration,
// kstatus conditions and counts; the manager exports metrics without
// operation names.
func TestSessionStatusAndMetrics(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](2), AdmissionPolicy: opsv1.AdmissionQueue})
	ns, session := reg.Namespace(), reg.Session()
	for i := range 3 {
		createOp(ctx, g, ns, fmt.Sprintf("m-%d", i), session)
		time.Sleep(5 * time.Millisecond)
	}
	g.Eventually(phaseOf(ctx, ns, "m-1")).Should(Equal(opsv1.PhaseProvisioning))
	g.Expect(reg.FailOperation(ctx, "m-0", "x")).To(Succeed())
	g.Eventually(func() opsv1.OpsSessionStatus {
		s := &opsv1.OpsSession{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: session}, s)
		return s.Status
	}).Should(And(HaveField("Active", BeEquivalentTo(2)), HaveField("Queued", BeZero()), HaveField("Retained", BeEquivalentTo(1))))
	s := &opsv1.OpsSession{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: session}, s)).To(Succeed())
	g.Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
	g.Expect(meta.IsStatusConditionTrue(s.Status.Conditions, opsv1.ConditionReady)).To(BeTrue())
	g.Expect(meta.IsStatusConditionFalse(s.Status.Conditions, opsv1.ConditionReconciling)).To(BeTrue())
	g.Expect(meta.IsStatusConditionFalse(s.Status.Conditions, opsv1.ConditionStalled)).To(BeTrue())

	families, err := crmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	for _, name := range []string{"meerkat_ops_operations", "meerkat_ops_admissions_total", "meerkat_ops_admission_wait_seconds", "meerkat_ops_time_to_terminal_seconds"} {
		g.Expect(byName).To(HaveKey(name))
		for _, m := range byName[name].GetMetric() {
			for _, l := range m.GetLabel() {
				g.Expect([]string{"namespace", "kind", "phase", "reason"}).To(ContainElement(l.GetName()), "label %s on %s", l.GetName(), name)
			}
		}
	}
	// The by-phase gauge follows the informer: this namespace holds one
	// Failed and two Provisioning operations.
	g.Eventually(func() map[string]float64 {
		families, err := crmetrics.Registry.Gather()
		if err != nil {
			return nil
		}
		byPhase := map[string]float64{}
		for _, f := range families {
			if f.GetName() != "meerkat_ops_operations" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["namespace"] == ns {
					byPhase[labels["phase"]] += m.GetGauge().GetValue()
				}
			}
		}
		return byPhase
	}).Should(Equal(map[string]float64{"Failed": 1, "Provisioning": 2}))
}

func eventReasons(ctx context.Context, ns, name string) func() []string {
	return func() []string {
		// core/v1, as `kubectl describe` reads them: the built-in view and
		// edit roles grant events in the core group only.
		var list corev1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil
		}
		var out []string
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}
