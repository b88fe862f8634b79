package envtest

// The 14 tests of Meerkat's ops lifecycle contract (ops_lifecycle_contract.rs
// in meerkat-runtime 0.5.2; the semantics are in docs/lifecycle.md), ported
// step for step. The Rust test
// ops_lifecycle_contract_<name> is TestOpsLifecycleContract_<Name> here.
// The one difference in kind: eviction is done by the controller, so the
// retention test waits for it (Eventually) rather than reading it back
// synchronously.

import (
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

const testRunID = "00000000-0000-0000-0000-000000000001"

func backgroundSpec(name string) opsclient.OperationSpec {
	return opsclient.OperationSpec{
		ID: opsclient.NewOperationID(), Kind: opsv1.BackgroundToolOp,
		DisplayName: name, SourceLabel: "test-background",
	}
}

func mobMemberSpec(name string) opsclient.OperationSpec {
	return opsclient.OperationSpec{
		ID: opsclient.NewOperationID(), Kind: opsv1.MobMemberChild,
		DisplayName: name, SourceLabel: "test-mob",
		ChildSessionID: opsclient.NewSessionID(), ExpectPeerChannel: true,
	}
}

func peerHandle(name string) opsv1.PeerHandle {
	return opsv1.PeerHandle{PeerName: name, TrustedPeer: opsv1.TrustedPeer{
		Name: name, PeerID: name + "-id", Address: "inproc://" + name,
	}}
}

func opResult(content string) opsv1.OperationResult {
	return opsv1.OperationResult{Content: content, IsError: false, DurationMs: 42, TokensUsed: 7}
}

func completedOutcome(r opsv1.OperationResult) opsclient.Outcome {
	return opsclient.Outcome{Type: opsv1.PhaseCompleted, Result: &r}
}

func TestOpsLifecycleContract_RegisterProgressPeerReadyCompleteAndWatch(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := mobMemberSpec("member-alpha")
	opID := spec.ID

	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())

	initial, err := registry.Snapshot(ctx, opID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(initial.Status).To(Equal(opsv1.PhaseProvisioning))
	g.Expect(initial.PeerReady).To(BeFalse())
	g.Expect(initial.ProgressCount).To(BeZero())
	g.Expect(initial.WatcherCount).To(BeZero())
	g.Expect(initial.ChildSessionID).To(Equal(spec.ChildSessionID))

	watch, err := registry.RegisterWatcher(ctx, opID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningSucceeded(ctx, opID)).To(Succeed())
	g.Expect(registry.ReportProgress(ctx, opID, opsclient.ProgressUpdate{Message: "booting", Percent: ptr.To(0.25)})).To(Succeed())
	g.Expect(registry.ReportProgress(ctx, opID, opsclient.ProgressUpdate{Message: "readying peer", Percent: ptr.To(0.75)})).To(Succeed())
	g.Expect(registry.PeerReady(ctx, opID, peerHandle("member-alpha"))).To(Succeed())

	running, err := registry.Snapshot(ctx, opID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(running.Status).To(Equal(opsv1.PhaseRunning))
	g.Expect(running.PeerReady).To(BeTrue())
	g.Expect(running.ProgressCount).To(BeEquivalentTo(2))
	g.Expect(running.WatcherCount).To(Equal(1))

	listed, err := registry.ListOperations(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(listed).To(HaveLen(1))
	g.Expect(listed[0].DisplayName).To(Equal("member-alpha"))

	result := opResult("completed")
	g.Expect(registry.CompleteOperation(ctx, opID, result)).To(Succeed())

	g.Expect(watch.Wait(ctx)).To(Equal(completedOutcome(result)))

	lateWatch, err := registry.RegisterWatcher(ctx, opID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lateWatch.Wait(ctx)).To(Equal(completedOutcome(result)))

	completed, err := registry.Snapshot(ctx, opID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(completed.Status).To(Equal(opsv1.PhaseCompleted))
	g.Expect(completed.WatcherCount).To(BeZero())
	g.Expect(completed.TerminalOutcome).To(Equal(ptr.To(completedOutcome(result))))
}

func TestOpsLifecycleContract_FailCancelAndRetireSurfaceTerminalOutcomes(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	failed := backgroundSpec("background-fail")
	g.Expect(registry.RegisterOperation(ctx, failed)).To(Succeed())
	failedWatch, err := registry.RegisterWatcher(ctx, failed.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningSucceeded(ctx, failed.ID)).To(Succeed())
	g.Expect(registry.FailOperation(ctx, failed.ID, "tool crashed")).To(Succeed())
	g.Expect(failedWatch.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseFailed, Error: "tool crashed"}))

	cancelled := backgroundSpec("background-cancel")
	g.Expect(registry.RegisterOperation(ctx, cancelled)).To(Succeed())
	cancelledWatch, err := registry.RegisterWatcher(ctx, cancelled.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningSucceeded(ctx, cancelled.ID)).To(Succeed())
	g.Expect(registry.CancelOperation(ctx, cancelled.ID, ptr.To("operator request"))).To(Succeed())
	g.Expect(cancelledWatch.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseCancelled, Reason: ptr.To("operator request")}))

	retired := mobMemberSpec("member-retire")
	g.Expect(registry.RegisterOperation(ctx, retired)).To(Succeed())
	retiredWatch, err := registry.RegisterWatcher(ctx, retired.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningSucceeded(ctx, retired.ID)).To(Succeed())
	g.Expect(registry.RequestRetire(ctx, retired.ID)).To(Succeed())
	g.Expect(registry.ReportProgress(ctx, retired.ID, opsclient.ProgressUpdate{Message: "finishing", Percent: ptr.To(0.9)})).To(Succeed())
	retiring, err := registry.Snapshot(ctx, retired.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(retiring.Status).To(Equal(opsv1.PhaseRetiring))
	g.Expect(retiring.ProgressCount).To(BeEquivalentTo(1))

	g.Expect(registry.MarkRetired(ctx, retired.ID)).To(Succeed())
	g.Expect(retiredWatch.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseRetired}))
	snap, err := registry.Snapshot(ctx, retired.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseRetired))

	aborted := backgroundSpec("background-abort")
	g.Expect(registry.RegisterOperation(ctx, aborted)).To(Succeed())
	abortedWatch, err := registry.RegisterWatcher(ctx, aborted.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.AbortProvisioning(ctx, aborted.ID, ptr.To("mob is stopping"))).To(Succeed())
	g.Expect(abortedWatch.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseAborted, Reason: ptr.To("mob is stopping")}))
	snap, err = registry.Snapshot(ctx, aborted.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseAborted))
}

func TestOpsLifecycleContract_TerminateOwnerResolvesAllPendingWatchesOnce(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	provisioning := backgroundSpec("background-terminate")
	g.Expect(registry.RegisterOperation(ctx, provisioning)).To(Succeed())
	provisioningWatch, err := registry.RegisterWatcher(ctx, provisioning.ID)
	g.Expect(err).NotTo(HaveOccurred())

	running := mobMemberSpec("member-terminate")
	g.Expect(registry.RegisterOperation(ctx, running)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, running.ID)).To(Succeed())
	runningWatch, err := registry.RegisterWatcher(ctx, running.ID)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(registry.TerminateOwner(ctx, "runtime shutting down")).To(Succeed())

	expected := opsclient.Outcome{Type: opsv1.PhaseTerminated, Reason: ptr.To("runtime shutting down")}
	g.Expect(provisioningWatch.Wait(ctx)).To(Equal(expected))
	g.Expect(runningWatch.Wait(ctx)).To(Equal(expected))

	lateWatch, err := registry.RegisterWatcher(ctx, running.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lateWatch.Wait(ctx)).To(Equal(expected))

	snap, err := registry.Snapshot(ctx, provisioning.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseTerminated))
	snap, err = registry.Snapshot(ctx, running.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseTerminated))
	g.Expect(snap.WatcherCount).To(BeZero(), "terminal watch resolution should drain the registry's active watcher set")
}

func makeOperationInput(operationID string, event opsclient.OpEvent) opsclient.OperationInput {
	return opsclient.OperationInput{
		Header: opsclient.InputHeader{
			ID: opsclient.NewOperationID(), Timestamp: metav1.Now(),
			Source: "System", Durability: "Derived",
			Visibility: opsclient.InputVisibility{TranscriptEligible: false, OperatorEligible: false},
		},
		OperationID: operationID,
		Event:       event,
	}
}

func TestOpsLifecycleContract_RuntimeSessionEntriesGetDistinctRegistries(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	adapter, _ := newRegistry(t, opsclient.SessionConfig{})
	sessionA, sessionB := opsclient.NewSessionID(), opsclient.NewSessionID()

	g.Expect(adapter.RegisterSession(ctx, sessionA, opsclient.SessionConfig{})).To(Succeed())
	g.Expect(adapter.RegisterSession(ctx, sessionB, opsclient.SessionConfig{})).To(Succeed())

	registryA, err := adapter.OpsLifecycleRegistry(ctx, sessionA)
	g.Expect(err).NotTo(HaveOccurred(), "session A registry")
	registryB, err := adapter.OpsLifecycleRegistry(ctx, sessionB)
	g.Expect(err).NotTo(HaveOccurred(), "session B registry")

	g.Expect(registryA).NotTo(BeIdenticalTo(registryB), "each runtime session should own a distinct lifecycle registry")

	member := mobMemberSpec("member-owned-by-a")
	g.Expect(registryA.RegisterOperation(ctx, member)).To(Succeed())
	g.Expect(registryA.ProvisioningSucceeded(ctx, member.ID)).To(Succeed())

	job := backgroundSpec("job-owned-by-b")
	g.Expect(registryB.RegisterOperation(ctx, job)).To(Succeed())
	g.Expect(registryB.ProvisioningSucceeded(ctx, job.ID)).To(Succeed())

	_, err = registryA.Snapshot(ctx, member.ID)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = registryA.Snapshot(ctx, job.ID)
	g.Expect(err).To(MatchError(opsclient.ErrNotFound))
	_, err = registryB.Snapshot(ctx, job.ID)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = registryB.Snapshot(ctx, member.ID)
	g.Expect(err).To(MatchError(opsclient.ErrNotFound))
}

func TestOpsLifecycleContract_RuntimeAdmitsOperationInputsForChildAndBackgroundEvents(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	runtime, _ := newRegistry(t, opsclient.SessionConfig{})
	sessionID := opsclient.NewSessionID()

	g.Expect(runtime.RegisterSession(ctx, sessionID, opsclient.SessionConfig{})).To(Succeed())

	childOperationID := opsclient.NewOperationID()
	childOutcome, childHandle, err := runtime.AcceptInputWithCompletion(ctx, sessionID,
		makeOperationInput(childOperationID, opsclient.OpEvent{Type: "Progress", Message: "member provisioning", Percent: ptr.To(0.5)}))
	g.Expect(err).NotTo(HaveOccurred(), "accept child lifecycle operation input")
	g.Expect(childOutcome.IsAccepted()).To(BeTrue())
	g.Expect(childHandle).To(BeNil(), "ignore-on-accept lifecycle inputs should not allocate completion waiters")

	backgroundOperationID := opsclient.NewOperationID()
	backgroundOutcome, backgroundHandle, err := runtime.AcceptInputWithCompletion(ctx, sessionID,
		makeOperationInput(backgroundOperationID, opsclient.OpEvent{Type: "Cancelled"}))
	g.Expect(err).NotTo(HaveOccurred(), "accept background lifecycle operation input")
	g.Expect(backgroundOutcome.IsAccepted()).To(BeTrue())
	g.Expect(backgroundHandle).To(BeNil())
}

func TestOpsLifecycleContract_BoundedCompletedRetentionEvictsOldest(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](3)})

	ids := make([]string, 0, 5)
	for i := range 5 {
		spec := backgroundSpec(fmt.Sprintf("evict-%d", i))
		g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
		g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
		g.Expect(registry.CompleteOperation(ctx, spec.ID, opResult(fmt.Sprintf("done-%d", i)))).To(Succeed())
		ids = append(ids, spec.ID)
	}

	snapshotErr := func(id string) func() error {
		return func() error { _, err := registry.Snapshot(ctx, id); return err }
	}
	g.Eventually(snapshotErr(ids[0])).Should(MatchError(opsclient.ErrNotFound), "op-0 should be evicted")
	g.Eventually(snapshotErr(ids[1])).Should(MatchError(opsclient.ErrNotFound), "op-1 should be evicted")
	g.Consistently(snapshotErr(ids[2]), 300*time.Millisecond).Should(Succeed(), "op-2 should be retained")
	g.Expect(snapshotErr(ids[3])()).To(Succeed(), "op-3 should be retained")
	g.Expect(snapshotErr(ids[4])()).To(Succeed(), "op-4 should be retained")
}

func TestOpsLifecycleContract_MultiListenerCompletionAllReceiveOutcome(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("multi-listen")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())

	watches := make([]*opsclient.Watcher, 0, 3)
	for range 3 {
		w, err := registry.RegisterWatcher(ctx, spec.ID)
		g.Expect(err).NotTo(HaveOccurred())
		watches = append(watches, w)
	}

	result := opResult("multi-done")
	g.Expect(registry.CompleteOperation(ctx, spec.ID, result)).To(Succeed())

	for _, w := range watches {
		g.Expect(w.Wait(ctx)).To(Equal(completedOutcome(result)))
	}
}

func TestOpsLifecycleContract_WaitAllReturnsAllOutcomes(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	specA, specB, specC := backgroundSpec("wait-a"), backgroundSpec("wait-b"), backgroundSpec("wait-c")
	for _, s := range []opsclient.OperationSpec{specA, specB, specC} {
		g.Expect(registry.RegisterOperation(ctx, s)).To(Succeed())
		g.Expect(registry.ProvisioningSucceeded(ctx, s.ID)).To(Succeed())
	}

	g.Expect(registry.CompleteOperation(ctx, specA.ID, opResult("a-done"))).To(Succeed())
	g.Expect(registry.FailOperation(ctx, specB.ID, "b-error")).To(Succeed())
	g.Expect(registry.CancelOperation(ctx, specC.ID, ptr.To("c-reason"))).To(Succeed())

	waitResult, err := registry.WaitAll(ctx, testRunID, []string{specA.ID, specB.ID, specC.ID})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(waitResult.Outcomes).To(HaveLen(3))
	g.Expect(waitResult.Outcomes[0].ID).To(Equal(specA.ID))
	g.Expect(waitResult.Outcomes[0].Outcome.Type).To(Equal(opsv1.PhaseCompleted))
	g.Expect(waitResult.Outcomes[1].ID).To(Equal(specB.ID))
	g.Expect(waitResult.Outcomes[1].Outcome.Type).To(Equal(opsv1.PhaseFailed))
	g.Expect(waitResult.Outcomes[2].ID).To(Equal(specC.ID))
	g.Expect(waitResult.Outcomes[2].Outcome.Type).To(Equal(opsv1.PhaseCancelled))
	// Authority-validated obligation carries all awaited IDs
	g.Expect(waitResult.Satisfied.OperationIDs).To(HaveLen(3))
	g.Expect(waitResult.Satisfied.WaitRequestID).NotTo(BeEmpty())
}

func TestOpsLifecycleContract_WaitAllUnknownIDReturnsNotFound(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	unknown := opsclient.NewOperationID()
	_, err := registry.WaitAll(ctx, testRunID, []string{unknown})
	var nf *opsclient.NotFoundError
	g.Expect(errors.As(err, &nf)).To(BeTrue(), "got %v", err)
	g.Expect(nf.ID).To(Equal(unknown))
}

func TestOpsLifecycleContract_CollectCompletedDrainsTerminalOperations(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	specA := backgroundSpec("collect-a")
	g.Expect(registry.RegisterOperation(ctx, specA)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, specA.ID)).To(Succeed())
	g.Expect(registry.CompleteOperation(ctx, specA.ID, opResult("done-a"))).To(Succeed())

	specB := backgroundSpec("collect-b")
	g.Expect(registry.RegisterOperation(ctx, specB)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, specB.ID)).To(Succeed())

	collected, err := registry.CollectCompleted(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(collected).To(HaveLen(1))
	g.Expect(collected[0].ID).To(Equal(specA.ID))
	g.Expect(collected[0].Outcome.Type).To(Equal(opsv1.PhaseCompleted))

	_, err = registry.Snapshot(ctx, specA.ID)
	g.Expect(err).To(MatchError(opsclient.ErrNotFound))
	_, err = registry.Snapshot(ctx, specB.ID)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(registry.CollectCompleted(ctx)).To(BeEmpty())
}

func TestOpsLifecycleContract_SnapshotIncludesPeerHandle(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := mobMemberSpec("peer-snap")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())

	snap1, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap1.PeerHandle).To(BeNil())

	g.Expect(registry.PeerReady(ctx, spec.ID, peerHandle("peer-snap"))).To(Succeed())

	snap2, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap2.PeerHandle).NotTo(BeNil())
	g.Expect(snap2.PeerHandle.PeerName).To(Equal("peer-snap"))
}

func TestOpsLifecycleContract_SnapshotIncludesTimestamps(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("timestamps")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())

	snap1, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap1.CreatedAtMs).To(BeNumerically(">", 0), "created_at_ms should be set")
	g.Expect(snap1.StartedAtMs).To(BeNil(), "not yet started")
	g.Expect(snap1.CompletedAtMs).To(BeNil(), "not yet completed")
	g.Expect(snap1.ElapsedMs).To(BeNil(), "no elapsed before completion")

	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	snap2, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap2.StartedAtMs).NotTo(BeNil(), "started_at_ms set after provisioning_succeeded")
	g.Expect(*snap2.StartedAtMs).To(BeNumerically(">=", snap2.CreatedAtMs))

	g.Expect(registry.CompleteOperation(ctx, spec.ID, opResult("done"))).To(Succeed())
	snap3, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap3.CompletedAtMs).NotTo(BeNil(), "completed_at_ms set")
	g.Expect(snap3.ElapsedMs).NotTo(BeNil(), "elapsed_ms computed")
	g.Expect(*snap3.CompletedAtMs).To(BeNumerically(">=", *snap3.StartedAtMs))
}

func TestOpsLifecycleContract_MaxConcurrentEnforcement(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](256), MaxConcurrent: ptr.To[int32](2)})

	specA := backgroundSpec("conc-a")
	g.Expect(registry.RegisterOperation(ctx, specA)).To(Succeed())
	g.Expect(registry.RegisterOperation(ctx, backgroundSpec("conc-b"))).To(Succeed())

	err := registry.RegisterOperation(ctx, backgroundSpec("conc-c"))
	var mce *opsclient.MaxConcurrentExceededError
	g.Expect(errors.As(err, &mce)).To(BeTrue(), "should reject when at max concurrent, got %v", err)
	g.Expect(*mce).To(Equal(opsclient.MaxConcurrentExceededError{Limit: 2, Active: 2}))

	g.Expect(registry.ProvisioningSucceeded(ctx, specA.ID)).To(Succeed())
	g.Expect(registry.CompleteOperation(ctx, specA.ID, opResult("freed"))).To(Succeed())

	g.Expect(registry.RegisterOperation(ctx, backgroundSpec("conc-d"))).To(Succeed())
}

func TestOpsLifecycleContract_MaxConcurrentNoneMeansUnlimited(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](256), MaxConcurrent: nil})

	for i := range 100 {
		g.Expect(registry.RegisterOperation(ctx, backgroundSpec(fmt.Sprintf("unlimited-%d", i)))).To(Succeed())
	}
}
