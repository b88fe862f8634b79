package reliability

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

const queueOf5 = 5

func queueSession(limit int32) opsv1.OpsSessionSpec {
	return opsv1.OpsSessionSpec{MaxConcurrent: ptr.To(limit), MaxCompleted: ptr.To[int32](1000), AdmissionPolicy: opsv1.AdmissionQueue}
}

// TestRacingCreatesTwoManagers: 200 Operations created at once by 16
// goroutines against maxConcurrent 5 (Queue), with two managers running at
// the same time and no leader election. The observer, which sees every
// status change in the API server's order, never sees more than 5 active.
func TestRacingCreatesTwoManagers(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	reg := newSession(ctx, t, ns, "race", queueSession(queueOf5))
	obs := observe(ctx, t, ns)
	errs := make(chan error, 1000)
	agents(ctx, 8, reg, obs, errs)

	a, b := startManager(t), startManager(t)
	defer a.stop(t)
	defer b.stop(t)
	createOps(ctx, t, ns, "race", 200, 16)

	g.Eventually(func() int {
		byPhase, _, _ := obs.counts()
		return byPhase[opsv1.PhaseCompleted]
	}, 3*time.Minute, 100*time.Millisecond).Should(Equal(200))
	byPhase, peak, twice := obs.counts()
	t.Logf("operations=200 managers=2 peakActive=%d phases=%v", peak, byPhase)
	g.Expect(peak).To(BeNumerically("<=", queueOf5))
	g.Expect(twice).To(BeEmpty(), "admitted twice")
	g.Expect(errs).To(BeEmpty())
}

// TestManagerRestartMidBurst stops the manager twice while a burst is being
// admitted and completed, and starts a new one each time.
func TestManagerRestartMidBurst(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	reg := newSession(ctx, t, ns, "burst", queueSession(queueOf5))
	obs := observe(ctx, t, ns)
	errs := make(chan error, 1000)
	agents(ctx, 4, reg, obs, errs)

	mgr := startManager(t)
	createOps(ctx, t, ns, "burst", 120, 8)
	restarts := 0
	for _, at := range []int{30, 70} {
		g.Eventually(func() int {
			byPhase, _, _ := obs.counts()
			return byPhase[opsv1.PhaseCompleted]
		}, 2*time.Minute, 20*time.Millisecond).Should(BeNumerically(">=", at))
		mgr.stop(t)
		mgr = startManager(t)
		restarts++
	}
	defer mgr.stop(t)

	g.Eventually(func() int {
		byPhase, _, _ := obs.counts()
		return byPhase[opsv1.PhaseCompleted]
	}, 3*time.Minute, 100*time.Millisecond).Should(Equal(120))
	byPhase, peak, twice := obs.counts()
	t.Logf("operations=120 restarts=%d peakActive=%d phases=%v", restarts, peak, byPhase)
	g.Expect(peak).To(BeNumerically("<=", queueOf5))
	g.Expect(twice).To(BeEmpty(), "admitted twice")
	g.Expect(byPhase[opsv1.PhasePending]).To(BeZero())
	g.Expect(errs).To(BeEmpty())

	// The session's counts settle on the truth.
	g.Eventually(func() opsv1.OpsSessionStatus {
		s := &opsv1.OpsSession{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "burst"}, s)
		return s.Status
	}, time.Minute).Should(And(
		HaveField("Active", BeZero()), HaveField("Queued", BeZero()),
		HaveField("Retained", BeEquivalentTo(120)), HaveField("Admitted", BeEmpty())))
}

// TestEightCollectorsRace: each terminal operation is collected exactly once.
func TestEightCollectorsRace(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	mgr := startManager(t)
	defer mgr.stop(t)
	reg := newSession(ctx, t, ns, "collect", opsv1.OpsSessionSpec{})

	const n = 60
	for i := range n {
		id := fmt.Sprintf("c-%03d", i)
		g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp})).To(Succeed())
		g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
		g.Expect(reg.CompleteOperation(ctx, id, opsv1.OperationResult{Content: id})).To(Succeed())
	}

	var mu sync.Mutex
	var all []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := reg.CollectCompleted(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			mu.Lock()
			defer mu.Unlock()
			for _, o := range got {
				all = append(all, o.ID)
				g.Expect(o.Outcome.Result.Content).To(Equal(o.ID))
			}
		}()
	}
	wg.Wait()
	slices.Sort(all)
	t.Logf("operations=%d collectors=8 collected=%d", n, len(all))
	g.Expect(all).To(HaveLen(n))
	g.Expect(slices.Compact(slices.Clone(all))).To(HaveLen(n), "an operation was collected twice")
	g.Expect(reg.CollectCompleted(ctx)).To(BeEmpty())
}

// TestRetentionAfterRestart lowers maxCompleted while the manager is down;
// the new manager applies it at start-up and keeps the newest.
func TestRetentionAfterRestart(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	mgr := startManager(t)
	reg := newSession(ctx, t, ns, "keep", opsv1.OpsSessionSpec{MaxCompleted: ptr.To[int32](20)})
	ids := make([]string, 0, 20)
	for i := range 20 {
		id := fmt.Sprintf("k-%03d", i)
		g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp})).To(Succeed())
		g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
		g.Expect(reg.CompleteOperation(ctx, id, opsv1.OperationResult{})).To(Succeed())
		ids = append(ids, id)
	}
	mgr.stop(t)

	s := &opsv1.OpsSession{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keep"}, s)).To(Succeed())
	patch := client.MergeFrom(s.DeepCopy())
	s.Spec.MaxCompleted = ptr.To[int32](5)
	g.Expect(k8s.Patch(ctx, s, patch)).To(Succeed())
	// Nothing evicts while no manager runs.
	g.Consistently(func() int { l, _ := reg.ListOperations(ctx); return len(l) }, 300*time.Millisecond).Should(Equal(20))

	mgr = startManager(t)
	defer mgr.stop(t)
	g.Eventually(func() []string {
		l, _ := reg.ListOperations(ctx)
		names := make([]string, 0, len(l))
		for _, s := range l {
			names = append(names, s.ID)
		}
		slices.Sort(names)
		return names
	}, time.Minute).Should(Equal(ids[15:]))
	t.Logf("operations=20 maxCompleted 20->5 while down, restarts=1, retained=%v", ids[15:])
}

// TestTerminateSessionMixedPhases terminates a session holding 50 operations
// in mixed phases: every non-terminal one, queued included, becomes
// Terminated with the reason; terminal ones keep their outcome; a new one
// is rejected with OwnerTerminated.
func TestTerminateSessionMixedPhases(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	mgr := startManager(t)
	defer mgr.stop(t)
	reg := newSession(ctx, t, ns, "mixed", queueSession(40))
	createOps(ctx, t, ns, "mixed", 50, 8)

	var admitted []string
	g.Eventually(func() int {
		var list opsv1.OperationList
		_ = k8s.List(ctx, &list, client.InNamespace(ns))
		admitted = admitted[:0]
		for _, op := range list.Items {
			if op.Status.Phase == opsv1.PhaseProvisioning {
				admitted = append(admitted, op.Name)
			}
		}
		return len(admitted)
	}, time.Minute).Should(Equal(40))
	slices.Sort(admitted)
	// 10 stay Provisioning, 10 Running, 5 Retiring, 10 Completed, 5 Failed; 10 stay queued.
	want := map[string]opsv1.OperationPhase{}
	for i, id := range admitted {
		switch {
		case i < 10:
			want[id] = opsv1.PhaseTerminated
		case i < 20:
			g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
			want[id] = opsv1.PhaseTerminated
		case i < 25:
			g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
			g.Expect(reg.RequestRetire(ctx, id)).To(Succeed())
			want[id] = opsv1.PhaseTerminated
		case i < 35:
			g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
			g.Expect(reg.CompleteOperation(ctx, id, opsv1.OperationResult{Content: id})).To(Succeed())
			want[id] = opsv1.PhaseCompleted
		default:
			g.Expect(reg.FailOperation(ctx, id, "failed "+id)).To(Succeed())
			want[id] = opsv1.PhaseFailed
		}
	}
	g.Expect(reg.TerminateOwner(ctx, "mob disbanded")).To(Succeed())

	var list opsv1.OperationList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	g.Expect(list.Items).To(HaveLen(50))
	terminated := 0
	for _, op := range list.Items {
		w, ok := want[op.Name]
		if !ok {
			w = opsv1.PhaseTerminated // was queued
		}
		g.Expect(op.Status.Phase).To(Equal(w), op.Name)
		switch w {
		case opsv1.PhaseTerminated:
			terminated++
			g.Expect(op.Status.Outcome).To(Equal(&opsv1.TerminalOutcome{Type: opsv1.PhaseTerminated, Reason: ptr.To("mob disbanded")}))
		case opsv1.PhaseCompleted:
			g.Expect(op.Status.Outcome.Result.Content).To(Equal(op.Name))
		case opsv1.PhaseFailed:
			g.Expect(op.Status.Outcome.Error).To(Equal("failed " + op.Name))
		}
	}
	t.Logf("operations=50 terminated=%d kept=%d", terminated, 50-terminated)
	g.Expect(terminated).To(Equal(35))
	g.Eventually(func() []string {
		var events corev1.EventList // as a person reads them: core/v1
		_ = k8s.List(ctx, &events, client.InNamespace(ns))
		var reasons []string
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "OpsSession" {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons
	}).Should(ContainElement("Terminated"))

	// After termination, a new operation is rejected with OwnerTerminated.
	late := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: "mixed", Kind: opsv1.BackgroundToolOp}}
	g.Expect(k8s.Create(ctx, late)).To(Succeed())
	g.Eventually(func() *opsv1.Rejection {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(late), late)
		return late.Status.Rejection
	}, time.Minute).Should(Equal(&opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}))
	g.Expect(meta.IsStatusConditionTrue(late.Status.Conditions, opsv1.ConditionStalled)).To(BeTrue())
}

// TestDeadlineAfterRestart: a provisioning deadline that passes while no
// manager runs is enforced by the next one at start-up.
func TestDeadlineAfterRestart(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	mgr := startManager(t)
	reg := newSession(ctx, t, ns, "deadline", opsv1.OpsSessionSpec{})
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: "slow", Kind: opsv1.BackgroundToolOp, ProvisioningTimeout: 3 * time.Second})).To(Succeed())
	mgr.stop(t)
	w, err := reg.RegisterWatcher(ctx, "slow")
	g.Expect(err).NotTo(HaveOccurred())
	time.Sleep(3200 * time.Millisecond) // the deadline passes while no manager runs
	snap, err := reg.Snapshot(ctx, "slow")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseProvisioning), "nothing enforces it while down")

	mgr = startManager(t)
	defer mgr.stop(t)
	out, err := w.Wait(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Type).To(Equal(opsv1.PhaseFailed))
	g.Expect(out.Error).To(HavePrefix("ProvisioningTimeout"))
	t.Logf("restarts=1 outcome=%q", out.Error)
}
