package envtest

// The cases docs/lifecycle.md lists that the Rust contract does not test.

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

func TestRegisterOperationAlreadyRegistered(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("dup")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())

	err := registry.RegisterOperation(ctx, spec)
	var ar *opsclient.AlreadyRegisteredError
	g.Expect(errors.As(err, &ar)).To(BeTrue(), "got %v", err)
	g.Expect(ar.ID).To(Equal(spec.ID))

	// Still retained as terminal: still AlreadyRegistered.
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	g.Expect(registry.CompleteOperation(ctx, spec.ID, opResult("done"))).To(Succeed())
	g.Expect(registry.RegisterOperation(ctx, spec)).To(MatchError(opsclient.ErrAlreadyRegistered))
}

func TestRegisterAgainAfterEviction(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](0)})
	spec := backgroundSpec("again")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	g.Expect(registry.CompleteOperation(ctx, spec.ID, opResult("first"))).To(Succeed())
	g.Eventually(func() error { _, err := registry.Snapshot(ctx, spec.ID); return err }).Should(MatchError(opsclient.ErrNotFound))

	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	snap, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseProvisioning))
}

func TestPeerReadyErrors(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	job := backgroundSpec("no-peer")
	g.Expect(registry.RegisterOperation(ctx, job)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, job.ID)).To(Succeed())
	var pne *opsclient.PeerNotExpectedError
	err := registry.PeerReady(ctx, job.ID, peerHandle("x"))
	g.Expect(errors.As(err, &pne)).To(BeTrue(), "got %v", err)
	g.Expect(pne.ID).To(Equal(job.ID))

	member := mobMemberSpec("peer")
	g.Expect(registry.RegisterOperation(ctx, member)).To(Succeed())
	// Provisioning: not yet allowed.
	g.Expect(registry.PeerReady(ctx, member.ID, peerHandle("peer"))).To(MatchError(opsclient.ErrInvalidTransition))
	g.Expect(registry.ProvisioningSucceeded(ctx, member.ID)).To(Succeed())
	g.Expect(registry.PeerReady(ctx, member.ID, peerHandle("peer"))).To(Succeed())
	g.Expect(registry.PeerReady(ctx, member.ID, peerHandle("peer"))).To(MatchError(opsclient.ErrAlreadyPeerReady))
}

func TestMaxConcurrentZeroAdmitsNothing(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](0)})
	spec := backgroundSpec("never")
	err := registry.RegisterOperation(ctx, spec)
	var mce *opsclient.MaxConcurrentExceededError
	g.Expect(errors.As(err, &mce)).To(BeTrue(), "got %v", err)
	g.Expect(*mce).To(Equal(opsclient.MaxConcurrentExceededError{Limit: 0, Active: 0}))
	g.Expect(err.Error()).To(Equal("max concurrent operations exceeded: limit 0, active 0"))
	// The refused object is removed, so the id is free.
	g.Eventually(func() error { _, err := registry.Snapshot(ctx, spec.ID); return err }).Should(MatchError(opsclient.ErrNotFound))
}

func TestWaitAllDuplicateID(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("dup-wait")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	_, err := registry.WaitAll(ctx, testRunID, []string{spec.ID, spec.ID})
	var dup *opsclient.DuplicateWaitOperationError
	g.Expect(errors.As(err, &dup)).To(BeTrue(), "got %v", err)
	g.Expect(dup.ID).To(Equal(spec.ID))
}

func TestWaitAllAlreadyTerminalReturnsAtOnce(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("done-already")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(registry.FailOperation(ctx, spec.ID, "boom")).To(Succeed())
	res, err := registry.WaitAll(ctx, testRunID, []string{spec.ID})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Outcomes).To(Equal([]opsclient.OperationOutcome{{ID: spec.ID, Outcome: opsclient.Outcome{Type: opsv1.PhaseFailed, Error: "boom"}}}))
}

func TestInvalidTransitions(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})

	spec := backgroundSpec("transitions")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())

	// complete_operation from Provisioning is refused.
	err := registry.CompleteOperation(ctx, spec.ID, opResult("too early"))
	var it *opsclient.InvalidTransitionError
	g.Expect(errors.As(err, &it)).To(BeTrue(), "got %v", err)
	g.Expect(*it).To(Equal(opsclient.InvalidTransitionError{ID: spec.ID, Status: opsv1.PhaseProvisioning, Action: "complete_operation"}))
	g.Expect(err.Error()).To(Equal("invalid lifecycle transition for " + spec.ID + ": Provisioning -> complete_operation"))

	// request_retire from Retiring is refused.
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	g.Expect(registry.RequestRetire(ctx, spec.ID)).To(Succeed())
	err = registry.RequestRetire(ctx, spec.ID)
	g.Expect(errors.As(err, &it)).To(BeTrue(), "got %v", err)
	g.Expect(it.Status).To(Equal(opsv1.PhaseRetiring))
	g.Expect(it.Action).To(Equal("request_retire"))

	// A terminal operation refuses everything, reporting its terminal status.
	g.Expect(registry.MarkRetired(ctx, spec.ID)).To(Succeed())
	err = registry.CancelOperation(ctx, spec.ID, nil)
	g.Expect(errors.As(err, &it)).To(BeTrue(), "got %v", err)
	g.Expect(it.Status).To(Equal(opsv1.PhaseRetired))

	// mark_retired straight from Running is accepted.
	direct := backgroundSpec("direct-retire")
	g.Expect(registry.RegisterOperation(ctx, direct)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, direct.ID)).To(Succeed())
	g.Expect(registry.MarkRetired(ctx, direct.ID)).To(Succeed())
	snap, err := registry.Snapshot(ctx, direct.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.TerminalOutcome).To(Equal(&opsclient.Outcome{Type: opsv1.PhaseRetired}))

	// Calls on an unknown id give NotFound.
	g.Expect(registry.ProvisioningSucceeded(ctx, "no-such-op")).To(MatchError(opsclient.ErrNotFound))
}

func TestProvisioningFailed(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("prov-fail")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	w, err := registry.RegisterWatcher(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningFailed(ctx, spec.ID, "image pull failed")).To(Succeed())
	g.Expect(w.Wait(ctx)).To(Equal(opsclient.Outcome{Type: opsv1.PhaseFailed, Error: "image pull failed"}))
	// Only from Provisioning.
	running := backgroundSpec("prov-fail-late")
	g.Expect(registry.RegisterOperation(ctx, running)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, running.ID)).To(Succeed())
	g.Expect(registry.ProvisioningFailed(ctx, running.ID, "late")).To(MatchError(opsclient.ErrInvalidTransition))
}

func TestLateWatcherOnEvictedOperationIsNotFound(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{MaxCompleted: ptr.To[int32](0)})
	spec := backgroundSpec("evicted")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	// A watcher registered before the terminal write sees the real outcome
	// even though retention evicts at once (maxCompleted 0).
	early, err := registry.RegisterWatcher(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	g.Expect(registry.CompleteOperation(ctx, spec.ID, opResult("gone soon"))).To(Succeed())
	g.Expect(early.Wait(ctx)).To(Equal(completedOutcome(opResult("gone soon"))))

	g.Eventually(func() error { _, err := registry.RegisterWatcher(ctx, spec.ID); return err }).Should(MatchError(opsclient.ErrNotFound))
	_, err = registry.WaitAll(ctx, testRunID, []string{spec.ID})
	g.Expect(err).To(MatchError(opsclient.ErrNotFound))
}

func TestUnregisteredSessionIsNotReady(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	rt, _ := newRegistry(t, opsclient.SessionConfig{})
	_, err := rt.OpsLifecycleRegistry(ctx, "never-registered")
	g.Expect(err).To(MatchError(opsclient.ErrSessionNotReady))
	_, _, err = rt.AcceptInputWithCompletion(ctx, "never-registered", makeOperationInput("x", opsclient.OpEvent{Type: "Progress"}))
	g.Expect(err).To(MatchError(opsclient.ErrSessionNotReady))
	// Registering is idempotent.
	g.Expect(rt.RegisterSession(ctx, "twice", opsclient.SessionConfig{})).To(Succeed())
	g.Expect(rt.RegisterSession(ctx, "twice", opsclient.SessionConfig{})).To(Succeed())
}

func TestProgressKeepsLatestMessageAndPercent(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, registry := newRegistry(t, opsclient.SessionConfig{})
	spec := backgroundSpec("progress")
	g.Expect(registry.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(registry.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	g.Expect(registry.ReportProgress(ctx, spec.ID, opsclient.ProgressUpdate{Message: "one", Percent: ptr.To(0.1)})).To(Succeed())
	g.Expect(registry.ReportProgress(ctx, spec.ID, opsclient.ProgressUpdate{Message: "two", Percent: ptr.To(0.6)})).To(Succeed())
	snap, err := registry.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.ProgressCount).To(BeEquivalentTo(2))
	g.Expect(snap.ProgressMessage).To(Equal("two"))
	g.Expect(snap.ProgressPercent).To(Equal(ptr.To(0.6)))
}
