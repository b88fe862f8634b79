package envtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

const onlyController = "only the ops-operator controller"

// rawOp creates, as the agent, an Operation of session with no status.
func rawOp(ctx context.Context, g Gomega, ns, session string) *opsv1.Operation {
	op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{GenerateName: "raw-", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp}}
	g.Expect(agent.Create(ctx, op)).To(Succeed())
	return op
}

func statusPatch(ctx context.Context, c client.Client, op *opsv1.Operation, typ types.PatchType, body string) error {
	return c.Status().Patch(ctx, op.DeepCopy(), client.RawPatch(typ, []byte(body)))
}

// TestOnlyTheControllerAdmitsRejectsAndTerminates: every transition the
// controller alone makes is refused to an agent, with a message that names
// the transition, and a person with the editor role may not write status at
// all. The agent's own transitions still pass.
func TestOnlyTheControllerAdmitsRejectsAndTerminates(t *testing.T) {
	ctx := testContext(t)
	// maxConcurrent 0: the controller admits nothing here, so every Pending
	// operation stays Pending while the agent tries.
	_, full := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](0), AdmissionPolicy: opsv1.AdmissionQueue})
	ns := full.Namespace()
	now := `"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"`

	cases := map[string]struct {
		patch string
		want  string
	}{
		"Pending -> Provisioning": {`{"status":{"phase":"Provisioning"}}`, "invalid lifecycle transition: Pending -> Provisioning: " + onlyController},
		"Pending -> Rejected": {`{"status":{"phase":"Rejected","rejection":{"reason":"MaxConcurrentExceeded","limit":1,"active":1}}}`,
			"invalid lifecycle transition: Pending -> Rejected: " + onlyController},
		"Pending -> Terminated": {`{"status":{"phase":"Terminated","outcome":{"type":"Terminated","reason":"mine"}}}`,
			"invalid lifecycle transition: Pending -> Terminated: " + onlyController},
		"set status.rejection":  {`{"status":{"rejection":{"reason":"OwnerTerminated"}}}`, "status.rejection is set only by the ops-operator controller"},
		"set status.admittedAt": {`{"status":{"admittedAt":` + now + `}}`, "status.admittedAt is set only by the ops-operator controller"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			op := rawOp(ctx, g, ns, full.Session())
			err := statusPatch(ctx, agent, op, types.MergePatchType, tc.patch)
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
			// A person with the editor role has no status write at all.
			err = statusPatch(ctx, k8s, op, types.MergePatchType, tc.patch)
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
			g.Expect(phaseOf(ctx, ns, op.Name)()).To(Equal(opsv1.PhasePending))
		})
	}

	t.Run("Running -> Terminated", func(t *testing.T) {
		g := NewWithT(t)
		_, reg := newRegistry(t, opsclient.SessionConfig{})
		id := opsclient.NewOperationID()
		g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp})).To(Succeed())
		g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
		op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: reg.Namespace()}}
		err := statusPatch(ctx, agent, op, types.MergePatchType,
			`{"status":{"phase":"Terminated","completedAt":`+now+`,"outcome":{"type":"Terminated","reason":"mine"}}}`)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		g.Expect(err.Error()).To(ContainSubstring("invalid lifecycle transition: Running -> Terminated: " + onlyController))
		// The agent's own transitions pass: progress, then complete.
		g.Expect(reg.ReportProgress(ctx, id, opsclient.ProgressUpdate{Message: "still mine"})).To(Succeed())
		g.Expect(reg.CompleteOperation(ctx, id, opsv1.OperationResult{Content: "done"})).To(Succeed())
	})

	t.Run("an agent cancels its own Pending operation", func(t *testing.T) {
		g := NewWithT(t)
		op := rawOp(ctx, g, ns, full.Session())
		g.Expect(statusPatch(ctx, agent, op, types.MergePatchType,
			`{"status":{"phase":"Cancelled","completedAt":`+now+`,"outcome":{"type":"Cancelled"}}}`)).To(Succeed())
	})
}

// TestFirstStatusWriteFollowsTheTable: an Operation with no status yet is
// Pending, so its first status write obeys Pending's row of the table.
func TestFirstStatusWriteFollowsTheTable(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](0), AdmissionPolicy: opsv1.AdmissionQueue})
	now := `"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"`
	for _, w := range []struct{ phase, body string }{
		{"Running", `{"status":{"phase":"Running","startedAt":` + now + `}}`},
		{"Completed", `{"status":{"phase":"Completed","completedAt":` + now + `,"outcome":{"type":"Completed","result":{"content":"forged"}}}}`},
		{"Retired", `{"status":{"phase":"Retired","completedAt":` + now + `,"outcome":{"type":"Retired"}}}`},
	} {
		// The controller's identity too: this is the CRD's table, not the policy.
		for who, c := range map[string]client.Client{"agent": agent, "controller": controllerIdentity} {
			op := rawOp(ctx, g, reg.Namespace(), reg.Session())
			err := statusPatch(ctx, c, op, types.MergePatchType, w.body)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s writing %s: got %v", who, w.phase, err)
			g.Expect(err.Error()).To(ContainSubstring("invalid lifecycle transition: Pending -> " + w.phase))
		}
	}
}

// TestFinishedStatusIsSealed: once final, nothing in status changes but the
// conditions the controller keeps, whoever writes, and removing the whole
// status is refused, so a finished operation is never admitted again.
func TestFinishedStatusIsSealed(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1)})
	ns := reg.Namespace()
	done := opsclient.NewOperationID()
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: done, Kind: opsv1.MobMemberChild})).To(Succeed())
	g.Expect(reg.ProvisioningSucceeded(ctx, done)).To(Succeed())
	g.Expect(reg.ReportProgress(ctx, done, opsclient.ProgressUpdate{Message: "half", Percent: ptr.To(0.5)})).To(Succeed())
	g.Expect(reg.CompleteOperation(ctx, done, opsv1.OperationResult{Content: "result"})).To(Succeed())
	// A rejection: the slot is taken by a running operation.
	hold := opsclient.NewOperationID()
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: hold, Kind: opsv1.BackgroundToolOp})).To(Succeed())
	rejected := rawOp(ctx, g, ns, reg.Session())
	g.Eventually(phaseOf(ctx, ns, rejected.Name)).Should(Equal(opsv1.PhaseRejected))

	later := `"` + time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000000Z") + `"`
	const progressSealed = "status.progress cannot change"
	completed := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: done, Namespace: ns}}
	cases := []struct {
		name string
		op   *opsv1.Operation
		typ  types.PatchType
		body string
		want string
	}{
		{"remove /status", completed, types.JSONPatchType, `[{"op":"remove","path":"/status"}]`, "status cannot be removed: the operation is Completed"},
		{"status: null", completed, types.MergePatchType, `{"status":null}`, "status cannot be removed: the operation is Completed"},
		{"phase removed", completed, types.JSONPatchType, `[{"op":"remove","path":"/status/phase"}]`, "Completed is final"},
		{"startedAt changed", completed, types.MergePatchType, `{"status":{"startedAt":` + later + `}}`, "status.startedAt cannot change: the operation is Completed"},
		{"createdAt changed", completed, types.MergePatchType, `{"status":{"createdAt":` + later + `}}`, "status.createdAt cannot change"},
		{"admittedAt changed", completed, types.MergePatchType, `{"status":{"admittedAt":` + later + `}}`, "status.admittedAt cannot change"},
		{"lastHeartbeatTime changed", completed, types.MergePatchType, `{"status":{"lastHeartbeatTime":` + later + `}}`, "status.lastHeartbeatTime cannot change"},
		{"progress count changed", completed, types.MergePatchType, `{"status":{"progress":{"count":99}}}`, progressSealed},
		{"progress message changed", completed, types.MergePatchType, `{"status":{"progress":{"message":"rewritten"}}}`, progressSealed},
		{"progress percent changed", completed, types.MergePatchType, `{"status":{"progress":{"percent":1}}}`, progressSealed},
		{"peerReady set", completed, types.MergePatchType, `{"status":{"peerReady":true}}`, "status.peerReady cannot change"},
		{"peerHandle set", completed, types.MergePatchType, `{"status":{"peerReady":true,"peerHandle":{"peerName":"p","trustedPeer":{"name":"p","peerID":"x","address":"inproc://p"}}}}`, "status.peerHandle cannot change"},
		{"rejection of a Rejected operation", rejected, types.MergePatchType, `{"status":{"rejection":{"reason":"OwnerTerminated"}}}`, "status.rejection cannot change: the operation is Rejected"},
		{"remove a Rejected status", rejected, types.JSONPatchType, `[{"op":"remove","path":"/status"}]`, "status cannot be removed: the operation is Rejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As the controller: the seal is the CRD's, not a matter of who writes.
			g := NewWithT(t)
			err := statusPatch(ctx, controllerIdentity, tc.op, tc.typ, tc.body)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.want))
		})
	}
	// The conditions stay the controller's to keep true.
	op := getOp(ctx, ns, done)()
	g.Expect(statusPatch(ctx, controllerIdentity, op, types.JSONPatchType,
		`[{"op":"replace","path":"/status/conditions/0/message","value":"rewritten by the controller"}]`)).To(Succeed())
	// Nothing ran again: still the same outcome and admission.
	g.Consistently(func() string {
		o := getOp(ctx, ns, done)()
		return fmt.Sprintf("%s %v", o.Status.Phase, o.Status.AdmittedAt.Equal(op.Status.AdmittedAt))
	}, 2*time.Second).Should(Equal("Completed true"))
}

// TestQueueOrderCannotBeForged: an agent that backdates its created-at
// annotation, or its status.createdAt, is still queued behind operations the
// API server stored before it; and nobody moves the annotation afterwards.
func TestQueueOrderCannotBeForged(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1), AdmissionPolicy: opsv1.AdmissionQueue})
	ns, session := reg.Namespace(), reg.Session()
	holder := opsclient.NewOperationID()
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: holder, Kind: opsv1.BackgroundToolOp})).To(Succeed())
	honest := rawOp(ctx, g, ns, session)
	g.Eventually(func() bool {
		return trueReason(getOp(ctx, ns, honest.Name)(), opsv1.ConditionReconciling) == opsv1.ReasonQueued
	}).Should(BeTrue())
	// creationTimestamp has seconds: be a second later than the honest one.
	time.Sleep(1100 * time.Millisecond)
	year := time.Now().AddDate(-1, 0, 0).UTC()
	forger := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{GenerateName: "forger-", Namespace: ns,
		Annotations: map[string]string{opsv1.AnnotationCreatedAt: year.Format(time.RFC3339Nano)}},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp}}
	g.Expect(agent.Create(ctx, forger)).To(Succeed())
	g.Expect(statusPatch(ctx, agent, forger, types.MergePatchType,
		`{"status":{"createdAt":"`+year.Format("2006-01-02T15:04:05.000000Z")+`"}}`)).To(Succeed())

	// The annotation is the registration time: immutable for everyone (an
	// agent may not update operations at all; a person may, but not this).
	err := k8s.Patch(ctx, honest.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+opsv1.AnnotationCreatedAt+`":"2000-01-01T00:00:00Z"}}}`)))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("ops.meerkat.dev/created-at] is immutable"))

	g.Expect(reg.ProvisioningSucceeded(ctx, holder)).To(Succeed())
	g.Expect(reg.CompleteOperation(ctx, holder, opsv1.OperationResult{})).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, honest.Name)).Should(Equal(opsv1.PhaseProvisioning))
	g.Expect(phaseOf(ctx, ns, forger.Name)()).To(Equal(opsv1.PhasePending))
	// And the admitted operation's createdAt is what the API server vouches for.
	got := getOp(ctx, ns, honest.Name)()
	g.Expect(got.Status.CreatedAt.Time).To(BeTemporally(">=", got.CreationTimestamp.Time))
}

func trueReason(op *opsv1.Operation, typ string) string {
	for _, c := range op.Status.Conditions {
		if c.Type == typ && c.Status == metav1.ConditionTrue {
			return c.Reason
		}
	}
	return ""
}

// TestSessionLimitsAndStatusBelongToPeopleAndTheController: an agent may
// create and terminate a session, but not re-limit it, strip its finalizer
// or write its status; a person with the editor role may re-limit it.
func TestSessionLimitsAndStatusBelongToPeopleAndTheController(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1)})
	key := client.ObjectKey{Namespace: reg.Namespace(), Name: reg.Session()}
	s := &opsv1.OpsSession{}
	g.Eventually(func() []string {
		_ = agent.Get(ctx, key, s)
		return s.Finalizers
	}).Should(ContainElement(opsv1.FinalizerTerminate))

	for name, body := range map[string]string{
		"maxConcurrent":   `{"spec":{"maxConcurrent":1000}}`,
		"maxCompleted":    `{"spec":{"maxCompleted":0}}`,
		"admissionPolicy": `{"spec":{"admissionPolicy":"Queue"}}`,
		heartbeatTimeout:  `{"spec":{"heartbeatTimeout":"1h"}}`,
	} {
		err := agent.Patch(ctx, s.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(body)))
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: got %v", name, err)
		g.Expect(err.Error()).To(ContainSubstring("needs the 'configure' verb on opssessions"))
	}
	err := agent.Patch(ctx, s.DeepCopy(), client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring(onlyController + " removes the ops.meerkat.dev/terminate-operations finalizer"))
	err = agent.Status().Patch(ctx, s.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"status":{"admitted":[]}}`)))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	err = k8s.Status().Patch(ctx, s.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"status":{"admitted":[]}}`)))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)

	// A person re-limits; the agent still terminates.
	g.Expect(k8s.Patch(ctx, s.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"maxConcurrent":3}}`)))).To(Succeed())
	g.Expect(reg.TerminateOwner(ctx, "done here")).To(Succeed())
}

// TestAgentCannotPushPastMaxConcurrent: an agent holding only the agent role
// writes raw status in a tight loop, trying to admit operations itself,
// while other agents register through the client; a watch in the API
// server's order shows the session never has more than one active.
func TestAgentCannotPushPastMaxConcurrent(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1), AdmissionPolicy: opsv1.AdmissionQueue})
	ns := reg.Namespace()

	w, err := agent.Watch(ctx, &opsv1.OperationList{}, client.InNamespace(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	var peak, over atomic.Int32
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		phase := map[string]opsv1.OperationPhase{}
		for ev := range w.ResultChan() {
			op, ok := ev.Object.(*opsv1.Operation)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(phase, op.Name)
			} else {
				phase[op.Name] = lifecycle.Normalize(op.Status.Phase)
			}
			n := int32(0)
			for _, p := range phase {
				if lifecycle.IsActive(p) {
					n++
				}
			}
			if n > peak.Load() {
				peak.Store(n)
			}
			if n > 1 {
				over.Add(1)
			}
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts, accepted atomic.Int64
	// The attacker: every Pending operation it sees, it tries to admit,
	// straight to Provisioning or straight to Running.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var list opsv1.OperationList
			if err := agent.List(ctx, &list, client.InNamespace(ns)); err != nil {
				continue
			}
			for i := range list.Items {
				op := &list.Items[i]
				if lifecycle.Normalize(op.Status.Phase) != opsv1.PhasePending {
					continue
				}
				for _, p := range []opsv1.OperationPhase{opsv1.PhaseProvisioning, opsv1.PhaseRunning} {
					attempts.Add(1)
					try := op.DeepCopy()
					try.Status.Phase = p
					if agent.Status().Update(ctx, try) == nil {
						accepted.Add(1)
					}
				}
			}
		}
	}()
	// Honest agents register, run and complete, one slot at a time.
	var completed atomic.Int32
	for a := 0; a < 3; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				id := opsclient.NewOperationID()
				if err := reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp}); err != nil {
					t.Errorf("RegisterOperation: %v", err)
					return
				}
				if err := reg.ProvisioningSucceeded(ctx, id); err != nil {
					t.Errorf("ProvisioningSucceeded: %v", err)
					return
				}
				if err := reg.CompleteOperation(ctx, id, opsv1.OperationResult{}); err != nil {
					t.Errorf("CompleteOperation: %v", err)
					return
				}
				completed.Add(1)
			}
		}()
	}
	g.Eventually(completed.Load, time.Minute).Should(BeEquivalentTo(12))
	close(stop)
	wg.Wait()
	w.Stop()
	<-observed
	t.Logf("attacker: %d raw admissions tried, %d accepted; peak active %d", attempts.Load(), accepted.Load(), peak.Load())
	g.Expect(attempts.Load()).To(BeNumerically(">", 0), "the attacker never found a Pending operation")
	g.Expect(accepted.Load()).To(BeZero())
	g.Expect(over.Load()).To(BeZero(), "moments with more than one active operation")
	g.Expect(peak.Load()).To(BeEquivalentTo(1))
}
