package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// The bad-input battery: every value, patch and reference below is either
// refused by the API server with a message naming the field (and nothing is
// stored or changed), or accepted and handled by the controller with a
// condition or an event. Afterwards the manager must be idle, and every
// object that should make progress must have made it.

// counterTotal sums every series of a counter family in controller-runtime's
// registry, which the in-process manager registers into.
func counterTotal(name string) (float64, error) {
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stored is what a refused write must leave untouched: the spec, and for an
// Operation the status without the conditions and observedGeneration the
// controller keeps up to date. "" means the object does not exist.
func stored(ctx context.Context, kind, ns, name string) (string, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(opsv1.GroupVersion.String())
	u.SetKind(kind)
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	out := map[string]any{"spec": u.Object["spec"], "generation": u.GetGeneration()}
	if kind == "Operation" {
		st, _ := u.Object["status"].(map[string]any)
		trimmed := map[string]any{}
		for k, v := range st {
			if k != "conditions" && k != "observedGeneration" {
				trimmed[k] = v
			}
		}
		out["status"] = trimmed
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// customConditions returns n conditions of types the controller does not
// own, then one of each type in standard.
func customConditions(n int, standard ...string) []any {
	now := time.Now().UTC().Format(time.RFC3339)
	var out []any
	cond := func(typ string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "reason": "BatteryTest", "message": "set by the battery", "lastTransitionTime": now}
	}
	for i := range n {
		out = append(out, cond(fmt.Sprintf("battery.example.com/Custom%d", i)))
	}
	for _, s := range standard {
		out = append(out, cond(s))
	}
	return out
}

func countCustom(conds []metav1.Condition) int {
	n := 0
	for _, c := range conds {
		if strings.HasPrefix(c.Type, "battery.example.com/") {
			n++
		}
	}
	return n
}

func condition(op *opsv1.Operation, typ string) *metav1.Condition {
	if op == nil {
		return nil
	}
	return meta.FindStatusCondition(op.Status.Conditions, typ)
}

type objRef struct{ kind, name string }

// refusal is one write the API server must refuse.
type refusal struct {
	name  string
	write func() error
	// code is the HTTP status wanted; 0 means 422 (Invalid).
	code int32
	// says are substrings the message must contain: the field, or for a
	// malformed patch what is wrong with it.
	says []string
	// target must be unchanged by the write (for a create: still absent).
	target objRef
}

// batteryRow is one line of the battery's report.
type batteryRow struct{ name, verdict, message string }

func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	// A fresh context for the whole battery, longer than testContext's: the
	// idle window alone is 30 s.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	g := NewWithT(t)
	var rows []batteryRow
	defer func() {
		var b strings.Builder
		for _, r := range rows {
			fmt.Fprintf(&b, "\n| %s | %s | %s |", r.name, r.verdict, r.message)
		}
		t.Logf("battery report:%s", b.String())
	}()

	panics0, err := counterTotal("controller_runtime_reconcile_panics_total")
	g.Expect(err).NotTo(HaveOccurred())
	reconcilesStart, _ := counterTotal("controller_runtime_reconcile_total")
	errors0, _ := counterTotal("controller_runtime_reconcile_errors_total")

	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()
	ns2 := newNamespace(t)

	// Fixtures.
	// run: a Running MobMemberChild, target of the agent's status writes.
	runSpec := mobMemberSpec("run")
	g.Expect(reg.RegisterOperation(ctx, runSpec)).To(Succeed())
	g.Expect(reg.ProvisioningSucceeded(ctx, runSpec.ID)).To(Succeed())
	run := runSpec.ID
	// imm: every identity field set, target of spec changes and patches.
	g.Expect(k8s.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "imm", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.MobMemberChild, DisplayName: "imm",
			SourceLabel: "battery", ChildSessionID: "child", ExpectPeerChannel: true}})).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "imm")).Should(Equal(opsv1.PhaseProvisioning))
	// elsewhere: a session in another namespace.
	elsewhere := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns2}}
	g.Expect(k8s.Create(ctx, elsewhere)).To(Succeed())

	op := func(name string, spec map[string]any) func() error {
		return func() error { return k8s.Create(ctx, unstructuredOp(ns, name, session, spec)) }
	}
	sess := func(name string, spec map[string]any) func() error {
		return func() error { return k8s.Create(ctx, unstructuredSession(ns, name, spec)) }
	}
	patch := func(c client.Client, kind, name string, pt types.PatchType, body string) func() error {
		return func() error {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion(opsv1.GroupVersion.String())
			u.SetKind(kind)
			u.SetNamespace(ns)
			u.SetName(name)
			return c.Patch(ctx, u, client.RawPatch(pt, []byte(body)))
		}
	}
	status := func(c client.Client, name string, st map[string]any) func() error {
		return func() error { return patchStatus(ctx, c, ns, name, st) }
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	peer := func(peerName, name, peerID, address string) map[string]any {
		return map[string]any{"peerReady": true, "peerHandle": map[string]any{"peerName": peerName,
			"trustedPeer": map[string]any{"name": name, "peerID": peerID, "address": address}}}
	}
	newOp, newSess := func(n string) objRef { return objRef{"Operation", n} }, func(n string) objRef { return objRef{"OpsSession", n} }
	runRef, immRef, sessRef := newOp(run), newOp("imm"), newSess(session)

	// Write-once requests: set them (accepted, carried out), then try to
	// change and clear them.
	t.Run("write-once requests are carried out", func(t *testing.T) {
		g := NewWithT(t)
		createOp(ctx, g, ns, "cancel-me", session)
		g.Expect(patch(k8s, "Operation", "cancel-me", types.MergePatchType, `{"spec":{"cancel":{"reason":"not needed"}}}`)()).To(Succeed())
		g.Eventually(phaseOf(ctx, ns, "cancel-me")).Should(Equal(opsv1.PhaseCancelled))
		g.Eventually(eventReasons(ctx, ns, "cancel-me")).Should(ContainElement("Cancelled"))

		abortSpec := backgroundSpec("abort-me")
		abortSpec.ID = "abort-me"
		g.Expect(reg.RegisterOperation(ctx, abortSpec)).To(Succeed())
		g.Expect(patch(k8s, "Operation", "abort-me", types.MergePatchType, `{"spec":{"abort":{"reason":"mob stopping"}}}`)()).To(Succeed())
		g.Eventually(phaseOf(ctx, ns, "abort-me")).Should(Equal(opsv1.PhaseAborted))
		g.Eventually(eventReasons(ctx, ns, "abort-me")).Should(ContainElement("Aborted"))

		retireSpec := backgroundSpec("retire-me")
		retireSpec.ID = "retire-me"
		g.Expect(reg.RegisterOperation(ctx, retireSpec)).To(Succeed())
		g.Expect(reg.ProvisioningSucceeded(ctx, "retire-me")).To(Succeed())
		g.Expect(patch(k8s, "Operation", "retire-me", types.MergePatchType, `{"spec":{"retire":{}}}`)()).To(Succeed())
		g.Eventually(phaseOf(ctx, ns, "retire-me")).Should(Equal(opsv1.PhaseRetiring))
		g.Eventually(eventReasons(ctx, ns, "retire-me")).Should(ContainElement("Retiring"))

		g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "term", Namespace: ns}})).To(Succeed())
		createOp(ctx, g, ns, "term-op", "term")
		g.Eventually(phaseOf(ctx, ns, "term-op")).Should(Equal(opsv1.PhaseProvisioning))
		g.Expect(patch(k8s, "OpsSession", "term", types.MergePatchType, `{"spec":{"termination":{"reason":"mob disbanded"}}}`)()).To(Succeed())
		g.Eventually(phaseOf(ctx, ns, "term-op")).Should(Equal(opsv1.PhaseTerminated))
		g.Eventually(func() bool {
			s := &opsv1.OpsSession{}
			return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "term"}, s) == nil &&
				meta.IsStatusConditionTrue(s.Status.Conditions, opsv1.ConditionTerminated)
		}).Should(BeTrue())
		rows = append(rows,
			batteryRow{"set spec.cancel (Pending op)", "handled", "phase Cancelled, event Cancelled"},
			batteryRow{"set spec.abort (Provisioning op)", "handled", "phase Aborted, event Aborted"},
			batteryRow{"set spec.retire (Running op)", "handled", "phase Retiring, event Retiring"},
			batteryRow{"set session spec.termination", "handled", "op Terminated, session condition Terminated=True"})
	})

	cases := []refusal{
		// Limits and enums on a session.
		{name: "maxConcurrent -1", write: sess("mc-neg", map[string]any{"maxConcurrent": int64(-1)}), says: []string{"spec.maxConcurrent"}, target: newSess("mc-neg")},
		{name: "maxConcurrent 10001", write: sess("mc-big", map[string]any{"maxConcurrent": int64(10001)}), says: []string{"spec.maxConcurrent"}, target: newSess("mc-big")},
		{name: "maxConcurrent 2^31", write: sess("mc-2p31", map[string]any{"maxConcurrent": int64(1) << 31}), says: []string{"spec.maxConcurrent"}, target: newSess("mc-2p31")},
		{name: "maxConcurrent 2^63-1", write: sess("mc-2p63", map[string]any{"maxConcurrent": int64(1<<63 - 1)}), says: []string{"spec.maxConcurrent"}, target: newSess("mc-2p63")},
		{name: "maxCompleted -1", write: sess("mk-neg", map[string]any{"maxCompleted": int64(-1)}), says: []string{"spec.maxCompleted"}, target: newSess("mk-neg")},
		{name: "maxCompleted 1000001", write: sess("mk-big", map[string]any{"maxCompleted": int64(1000001)}), says: []string{"spec.maxCompleted"}, target: newSess("mk-big")},
		{name: "maxCompleted 2^31", write: sess("mk-2p31", map[string]any{"maxCompleted": int64(1) << 31}), says: []string{"spec.maxCompleted"}, target: newSess("mk-2p31")},
		{name: "maxConcurrent -1 by patch", write: patch(k8s, "OpsSession", session, types.MergePatchType, `{"spec":{"maxConcurrent":-1}}`), says: []string{"spec.maxConcurrent"}, target: sessRef},
		{name: "maxCompleted 2^31 by patch", write: patch(k8s, "OpsSession", session, types.MergePatchType, `{"spec":{"maxCompleted":2147483648}}`), says: []string{"spec.maxCompleted"}, target: sessRef},
		{name: "admissionPolicy Maybe", write: sess("pol", map[string]any{"admissionPolicy": "Maybe"}), says: []string{"spec.admissionPolicy", "Unsupported value"}, target: newSess("pol")},
		{name: "admissionPolicy lower-case by patch", write: patch(k8s, "OpsSession", session, types.MergePatchType, `{"spec":{"admissionPolicy":"queue"}}`), says: []string{"spec.admissionPolicy"}, target: sessRef},
		{name: "termination reason 1025 chars", write: sess("term-long", map[string]any{"termination": map[string]any{"reason": long(1025)}}), says: []string{"spec.termination.reason"}, target: newSess("term-long")},
		{name: "termination reason empty", write: sess("term-empty", map[string]any{"termination": map[string]any{"reason": ""}}), says: []string{"spec.termination.reason"}, target: newSess("term-empty")},

		// Enums and strings on an operation's spec.
		{name: "kind CronJob", write: op("bad-kind", map[string]any{"kind": "CronJob"}), says: []string{"spec.kind", "Unsupported value"}, target: newOp("bad-kind")},
		{name: "displayName 1025 chars", write: op("dn-long", map[string]any{"displayName": long(1025)}), says: []string{"spec.displayName", "1024"}, target: newOp("dn-long")},
		{name: "displayName 1 MB", write: op("dn-1mb", map[string]any{"displayName": long(1 << 20)}), says: []string{"spec.displayName", "1024"}, target: newOp("dn-1mb")},
		{name: "sourceLabel 257 chars", write: op("sl-long", map[string]any{"sourceLabel": long(257)}), says: []string{"spec.sourceLabel", "256"}, target: newOp("sl-long")},
		{name: "childSessionID 257 chars", write: op("cs-long", map[string]any{"childSessionID": long(257)}), says: []string{"spec.childSessionID", "256"}, target: newOp("cs-long")},
		{name: "cancel reason 1025 chars", write: op("cr-long", map[string]any{"cancel": map[string]any{"reason": long(1025)}}), says: []string{"spec.cancel.reason", "1024"}, target: newOp("cr-long")},
		{name: "retire reason 1025 chars", write: op("rr-long", map[string]any{"retire": map[string]any{"reason": long(1025)}}), says: []string{"spec.retire.reason", "1024"}, target: newOp("rr-long")},
		{name: "abort reason 1025 chars by patch", write: patch(k8s, "Operation", "imm", types.MergePatchType, fmt.Sprintf(`{"spec":{"abort":{"reason":%q}}}`, long(1025))), says: []string{"spec.abort.reason", "1024"}, target: immRef},
		{name: "sessionName not a DNS name", write: op("sn-bad", map[string]any{"sessionName": "Not_A_Name"}), says: []string{"spec.sessionName"}, target: newOp("sn-bad")},

		// The agent's status writes.
		{name: "phase Bogus", write: status(agent, run, map[string]any{"phase": "Bogus"}), says: []string{"status.phase", "Unsupported value"}, target: runRef},
		{name: "progress percent -0.1", write: status(agent, run, map[string]any{"progress": map[string]any{"percent": -0.1}}), says: []string{"status.progress.percent"}, target: runRef},
		{name: "progress percent 1.5", write: status(agent, run, map[string]any{"progress": map[string]any{"percent": 1.5}}), says: []string{"status.progress.percent"}, target: runRef},
		{name: "progress message 4097 chars", write: status(agent, run, map[string]any{"progress": map[string]any{"message": long(4097)}}), says: []string{"status.progress.message", "4096"}, target: runRef},
		{name: "outcome type Bogus", write: status(agent, run, map[string]any{"phase": "Failed", "outcome": map[string]any{"type": "Bogus", "error": "x"}}), says: []string{"status.outcome.type", "Unsupported value"}, target: runRef},
		// The schema's enum for outcome.type is the phase enum (all eleven
		// phases); the CEL rules refuse the non-terminal ones.
		{name: "outcome type Pending in phase Running", write: status(agent, run, map[string]any{"outcome": map[string]any{"type": "Pending"}}), says: []string{"status.outcome is only allowed in a terminal phase, not Running"}, target: runRef},
		{name: "outcome type Rejected in phase Failed", write: status(agent, run, map[string]any{"phase": "Failed", "outcome": map[string]any{"type": "Rejected"}}), says: []string{"status.outcome.type Rejected does not match phase Failed", "outcome.type must be a terminal phase (Completed, Failed, Aborted, Cancelled, Retired or Terminated), not Rejected"}, target: runRef},
		{name: "outcome error 32769 chars", write: status(agent, run, map[string]any{"phase": "Failed", "outcome": map[string]any{"type": "Failed", "error": long(32769)}}), says: []string{"status.outcome.error", "32768"}, target: runRef},
		{name: "outcome content 262145 chars", write: status(agent, run, map[string]any{"phase": "Completed", "outcome": map[string]any{"type": "Completed", "result": map[string]any{"content": long(262145)}}}), says: []string{"status.outcome.result.content", "262144"}, target: runRef},
		{name: "peerHandle.peerName 257 chars", write: status(agent, run, peer(long(257), "p", "p-id", "inproc://p")), says: []string{"status.peerHandle.peerName", "256"}, target: runRef},
		{name: "peerHandle.trustedPeer.name 257 chars", write: status(agent, run, peer("p", long(257), "p-id", "inproc://p")), says: []string{"status.peerHandle.trustedPeer.name", "256"}, target: runRef},
		{name: "peerHandle.trustedPeer.peerID 257 chars", write: status(agent, run, peer("p", "p", long(257), "inproc://p")), says: []string{"status.peerHandle.trustedPeer.peerID", "256"}, target: runRef},
		{name: "peerHandle.trustedPeer.address 1025 chars", write: status(agent, run, peer("p", "p", "p-id", long(1025))), says: []string{"status.peerHandle.trustedPeer.address", "1024"}, target: runRef},
		{name: "peerHandle.peerName empty", write: status(agent, run, peer("", "p", "p-id", "inproc://p")), says: []string{"status.peerHandle.peerName"}, target: runRef},
		{name: "rejection reason Bogus (controller identity)", write: status(controllerIdentity, "imm", map[string]any{"rejection": map[string]any{"reason": "Bogus"}}), says: []string{"status.rejection.reason", "Unsupported value"}, target: immRef},
		{name: "17 conditions", write: status(agent, run, map[string]any{"conditions": customConditions(13, "Terminal", "Ready", "Reconciling", "Stalled")}), says: []string{"status.conditions", "must have at most 16 items"}, target: runRef},
		{name: "13 custom conditions", write: status(agent, run, map[string]any{"conditions": customConditions(13)}), says: []string{"status.conditions", "at most 12 conditions besides Terminal, Ready, Reconciling and Stalled"}, target: runRef},

		// Immutable identity.
		{name: "change sessionName", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"sessionName":"other"}}`), says: []string{"spec.sessionName is immutable"}, target: immRef},
		{name: "change kind", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"kind":"BackgroundToolOp"}}`), says: []string{"spec.kind is immutable"}, target: immRef},
		{name: "change displayName", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"displayName":"renamed"}}`), says: []string{"spec.displayName is immutable"}, target: immRef},
		{name: "remove displayName", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"displayName":null}}`), says: []string{"spec.displayName is immutable"}, target: immRef},
		{name: "change sourceLabel", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"sourceLabel":"other"}}`), says: []string{"spec.sourceLabel is immutable"}, target: immRef},
		{name: "change childSessionID", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"childSessionID":"other"}}`), says: []string{"spec.childSessionID is immutable"}, target: immRef},
		{name: "change expectPeerChannel", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":{"expectPeerChannel":false}}`), says: []string{"spec.expectPeerChannel is immutable"}, target: immRef},

		// Write-once requests, set above.
		{name: "change spec.cancel reason", write: patch(k8s, "Operation", "cancel-me", types.MergePatchType, `{"spec":{"cancel":{"reason":"changed my mind"}}}`), says: []string{"spec.cancel is write-once"}, target: newOp("cancel-me")},
		// Removing a request is allowed once the operation is final (a GitOps
		// tool removing it from Git; gitops_test.go); changing one never is.
		{name: "change spec.abort reason", write: patch(k8s, "Operation", "abort-me", types.MergePatchType, `{"spec":{"abort":{"reason":"other"}}}`), says: []string{"spec.abort is write-once"}, target: newOp("abort-me")},
		{name: "clear spec.retire", write: patch(k8s, "Operation", "retire-me", types.MergePatchType, `{"spec":{"retire":null}}`), says: []string{"spec.retire is write-once"}, target: newOp("retire-me")},
		{name: "add spec.retire reason", write: patch(k8s, "Operation", "retire-me", types.MergePatchType, `{"spec":{"retire":{"reason":"late"}}}`), says: []string{"spec.retire is write-once"}, target: newOp("retire-me")},
		{name: "clear session spec.termination", write: patch(k8s, "OpsSession", "term", types.MergePatchType, `{"spec":{"termination":null}}`), says: []string{"spec.termination is write-once"}, target: newSess("term")},
		{name: "change session spec.termination reason", write: patch(k8s, "OpsSession", "term", types.MergePatchType, `{"spec":{"termination":{"reason":"other"}}}`), says: []string{"spec.termination is write-once"}, target: newSess("term")},

		// Malformed patches and wrong types.
		{name: "invalid JSON merge patch body", write: patch(k8s, "OpsSession", session, types.MergePatchType, `{"spec":{"maxConcurrent":`), code: 400, says: []string{"JSON"}, target: sessRef},
		// kube-apiserver v1.37 answers a JSON patch it cannot apply with a
		// generic 422 and drops the detail (handlers/patch.go builds it with
		// NewGenericServerResponse(..., isUnexpectedResponse=false)): the
		// refusal is clear, the reason is not. Upstream, not ours to mend.
		{name: "JSON patch with op frobnicate", write: patch(k8s, "Operation", "imm", types.JSONPatchType, `[{"op":"frobnicate","path":"/spec/displayName","value":"x"}]`), code: 422, says: []string{"rejected our request"}, target: immRef},
		{name: "JSON patch with a missing path", write: patch(k8s, "Operation", "imm", types.JSONPatchType, `[{"op":"replace","path":"/spec/no/such","value":"x"}]`), code: 422, says: []string{"rejected our request"}, target: immRef},
		{name: "JSON patch replacing spec.sessionName", write: patch(k8s, "Operation", "imm", types.JSONPatchType, `[{"op":"replace","path":"/spec/sessionName","value":"other"}]`), says: []string{"spec.sessionName is immutable"}, target: immRef},
		{name: "JSON patch that is not a list", write: patch(k8s, "Operation", "imm", types.JSONPatchType, `{"op":"replace","path":"/spec/displayName","value":"x"}`), code: 400, says: []string{"json"}, target: immRef},
		{name: "strategic merge patch on a CR", write: patch(k8s, "OpsSession", session, types.StrategicMergePatchType, `{"spec":{"maxConcurrent":5}}`), code: 415, says: []string{"application/merge-patch+json"}, target: sessRef},
		{name: "maxConcurrent \"five\"", write: patch(k8s, "OpsSession", session, types.MergePatchType, `{"spec":{"maxConcurrent":"five"}}`), says: []string{"spec.maxConcurrent", "integer"}, target: sessRef},
		{name: "maxConcurrent \"five\" at creation", write: sess("five", map[string]any{"maxConcurrent": "five"}), says: []string{"spec.maxConcurrent", "integer"}, target: newSess("five")},
		{name: "progress percent \"half\"", write: status(agent, run, map[string]any{"progress": map[string]any{"percent": "half"}}), says: []string{"status.progress.percent", "number"}, target: runRef},
		{name: "spec a string", write: patch(k8s, "Operation", "imm", types.MergePatchType, `{"spec":"oops"}`), says: []string{"spec"}, target: immRef},
	}

	t.Run("refused", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before, err := stored(ctx, c.target.kind, ns, c.target.name)
				if err != nil {
					t.Fatal(err)
				}
				err = c.write()
				if err == nil {
					rows = append(rows, batteryRow{c.name, "ACCEPTED (bug)", ""})
					t.Fatalf("accepted; want a refusal naming %q", c.says)
				}
				msg := err.Error()
				short := msg
				if len(short) > 600 {
					short = short[:600] + fmt.Sprintf("... (%d bytes)", len(msg))
				}
				rows = append(rows, batteryRow{c.name, "refused", short})
				want := c.code
				if want == 0 {
					want = 422
				}
				status, ok := err.(apierrors.APIStatus)
				if !ok {
					t.Fatalf("not an API status error: %T %v", err, err)
				}
				if got := status.Status().Code; got != want {
					t.Errorf("HTTP %d, want %d: %s", got, want, short)
				}
				if want == 422 && !apierrors.IsInvalid(err) && c.code == 0 {
					t.Errorf("reason %q, want Invalid: %s", apierrors.ReasonForError(err), short)
				}
				for _, s := range c.says {
					if !strings.Contains(msg, s) {
						t.Errorf("the message does not say %q: %s", s, short)
					}
				}
				if len(msg) > 16<<10 {
					t.Errorf("the message is %d bytes: the API server echoed the value", len(msg))
				}
				after, err := stored(ctx, c.target.kind, ns, c.target.name)
				if err != nil {
					t.Fatal(err)
				}
				if after != before {
					t.Errorf("%s %s changed:\nbefore %.400s\nafter  %.400s", c.target.kind, c.target.name, before, after)
				}
			})
		}
	})

	// Values at the limits are accepted (dry run: nothing stored).
	t.Run("limits are inclusive", func(t *testing.T) {
		dry := func(o *unstructured.Unstructured) func() error {
			return func() error { return k8s.Create(ctx, o, client.DryRunAll) }
		}
		dryStatus := func(st map[string]any) func() error {
			return func() error {
				body, _ := json.Marshal(map[string]any{"status": st})
				return agent.Status().Patch(ctx, unstructuredOp(ns, run, "", nil), client.RawPatch(types.MergePatchType, body), client.DryRunAll)
			}
		}
		for name, write := range map[string]func() error{
			"maxConcurrent 0":           dry(unstructuredSession(ns, "edge", map[string]any{"maxConcurrent": int64(0)})),
			"maxConcurrent 10000":       dry(unstructuredSession(ns, "edge", map[string]any{"maxConcurrent": int64(10000)})),
			"maxCompleted 0":            dry(unstructuredSession(ns, "edge", map[string]any{"maxCompleted": int64(0)})),
			"maxCompleted 1000000":      dry(unstructuredSession(ns, "edge", map[string]any{"maxCompleted": int64(1000000)})),
			"termination reason 1024":   dry(unstructuredSession(ns, "edge", map[string]any{"termination": map[string]any{"reason": long(1024)}})),
			"displayName 1024":          dry(unstructuredOp(ns, "edge", session, map[string]any{"displayName": long(1024)})),
			"sourceLabel 256":           dry(unstructuredOp(ns, "edge", session, map[string]any{"sourceLabel": long(256)})),
			"childSessionID 256":        dry(unstructuredOp(ns, "edge", session, map[string]any{"childSessionID": long(256)})),
			"cancel reason 1024":        dry(unstructuredOp(ns, "edge", session, map[string]any{"cancel": map[string]any{"reason": long(1024)}})),
			"percent 0":                 dryStatus(map[string]any{"progress": map[string]any{"percent": float64(0)}}),
			"percent 1":                 dryStatus(map[string]any{"progress": map[string]any{"percent": float64(1)}}),
			"progress message 4096":     dryStatus(map[string]any{"progress": map[string]any{"message": long(4096)}}),
			"outcome error 32768":       dryStatus(map[string]any{"phase": "Failed", "outcome": map[string]any{"type": "Failed", "error": long(32768)}}),
			"outcome content 262144":    dryStatus(map[string]any{"phase": "Completed", "outcome": map[string]any{"type": "Completed", "result": map[string]any{"content": long(262144)}}}),
			"peer handle at its limits": dryStatus(peer(long(256), long(256), long(256), long(1024))),
			"16 conditions, 12 custom":  dryStatus(map[string]any{"conditions": customConditions(12, "Terminal", "Ready", "Reconciling", "Stalled")}),
		} {
			if err := write(); err != nil {
				t.Errorf("%s: refused: %v", name, err)
			}
		}
	})

	// Accepted and handled by the controller.
	var foreignUID types.UID
	t.Run("handled", func(t *testing.T) {
		g := NewWithT(t)
		stalled := func(name string) func() string {
			return func() string {
				if c := condition(getOp(ctx, ns, name)(), opsv1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
					return c.Reason + ": " + c.Message
				}
				return ""
			}
		}
		// A missing session: the operation waits, Stalled/SessionNotFound.
		createOp(ctx, g, ns, "orphan", "later")
		g.Eventually(stalled("orphan")).Should(HavePrefix(opsv1.ReasonSessionNotFound + `: OpsSession "later" does not exist in namespace ` + ns))
		// With 12 custom conditions written by the agent (a merge patch
		// replaces the list), the controller still fits all four of its own.
		g.Expect(patchStatus(ctx, agent, ns, "orphan", map[string]any{"conditions": customConditions(12)})).To(Succeed())
		g.Eventually(func() []string {
			o := getOp(ctx, ns, "orphan")()
			var kinds []string
			for _, c := range o.Status.Conditions {
				if !strings.HasPrefix(c.Type, "battery.example.com/") {
					kinds = append(kinds, c.Type)
				}
			}
			sort.Strings(kinds)
			return append(kinds, fmt.Sprint(countCustom(o.Status.Conditions)))
		}).Should(Equal([]string{"Ready", "Stalled", "Terminal", "12"}))
		g.Expect(stalled("orphan")()).To(HavePrefix(opsv1.ReasonSessionNotFound))
		rows = append(rows, batteryRow{"missing session", "handled", "Pending, Stalled=True reason SessionNotFound: " + stalled("orphan")()})
		rows = append(rows, batteryRow{"12 custom conditions on a Pending op waiting for its session", "handled", "accepted; controller re-adds Terminal, Ready and Stalled (15 in all; Reconciling stays away while Stalled)"})

		// A session in another namespace is a missing session.
		createOp(ctx, g, ns, "cross-ns", "elsewhere")
		g.Eventually(stalled("cross-ns")).Should(HavePrefix(opsv1.ReasonSessionNotFound + `: OpsSession "elsewhere" does not exist in namespace ` + ns))
		rows = append(rows, batteryRow{"session only in another namespace", "handled", "Pending, Stalled=True: " + stalled("cross-ns")()})

		// Owner references to a session UID from another namespace.
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(elsewhere), elsewhere)).To(Succeed())
		foreignUID = elsewhere.UID
		for name, ownerName := range map[string]string{"foreign-owner": "elsewhere", "foreign-uid": session} {
			o := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSession",
					Name: ownerName, UID: foreignUID, Controller: ptr.To(true)}}},
				Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp, DisplayName: name}}
			g.Expect(k8s.Create(ctx, o)).To(Succeed())
			g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.PhaseProvisioning))
			g.Expect(reg.ProvisioningSucceeded(ctx, name)).To(Succeed())
			g.Eventually(func() bool {
				return meta.IsStatusConditionTrue(getOp(ctx, ns, name)().Status.Conditions, opsv1.ConditionReady)
			}).Should(BeTrue())
		}
		rows = append(rows, batteryRow{"ownerReference to a session UID in another namespace (name of that session / of the local one)", "handled", "admitted by its own session like any other (Provisioning, then Running, Ready=True)"})

		// 12 custom conditions on a Running operation: accepted, and the
		// controller puts back its own (the merge patch replaced the list).
		customSpec := backgroundSpec("custom-conds")
		customSpec.ID = "custom-conds"
		g.Expect(reg.RegisterOperation(ctx, customSpec)).To(Succeed())
		g.Expect(reg.ProvisioningSucceeded(ctx, "custom-conds")).To(Succeed())
		g.Expect(patchStatus(ctx, agent, ns, "custom-conds", map[string]any{"conditions": customConditions(12)})).To(Succeed())
		g.Eventually(func() bool {
			o := getOp(ctx, ns, "custom-conds")()
			return countCustom(o.Status.Conditions) == 12 &&
				meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionReady) &&
				meta.IsStatusConditionFalse(o.Status.Conditions, opsv1.ConditionTerminal)
		}).Should(BeTrue(), "Ready and Terminal are back beside the 12 custom conditions")
		// It still finishes, with its Terminal condition.
		g.Expect(reg.FailOperation(ctx, "custom-conds", "failed on purpose")).To(Succeed())
		g.Eventually(func() bool {
			o := getOp(ctx, ns, "custom-conds")()
			return countCustom(o.Status.Conditions) == 12 &&
				meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionTerminal) &&
				meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionStalled)
		}).Should(BeTrue())
		rows = append(rows, batteryRow{"12 custom conditions on a Running op", "handled", "accepted; controller re-adds Ready=True, Terminal=False (14); Failed later gives Terminal=True, Stalled=True with the 12 kept"})

		// Deleting the foreign owner changes nothing here.
		g.Expect(k8s.Delete(ctx, elsewhere)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(elsewhere), &opsv1.OpsSession{}))
		}).Should(BeTrue())
		for _, name := range []string{"foreign-owner", "foreign-uid"} {
			g.Expect(phaseOf(ctx, ns, name)()).To(Equal(opsv1.PhaseRunning), "%s after its foreign owner was deleted", name)
		}
	})

	// The manager is idle: everything above settled, nothing retries.
	t.Run("idle", func(t *testing.T) {
		g := NewWithT(t)
		reconciles0, err := counterTotal("controller_runtime_reconcile_total")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(reconciles0).To(BeNumerically(">", reconcilesStart), "the battery's reconciles were not counted: wrong metric?")
		errs0, _ := counterTotal("controller_runtime_reconcile_errors_total")
		cpu0, start := cpuTime(), time.Now()
		time.Sleep(30 * time.Second)
		cpu, wall := cpuTime()-cpu0, time.Since(start)
		reconciles, _ := counterTotal("controller_runtime_reconcile_total")
		errs, _ := counterTotal("controller_runtime_reconcile_errors_total")
		t.Logf("idle window %v: %.0f reconciles (%.0f errors), CPU %v (%.1f%% of one core)",
			wall.Round(time.Millisecond), reconciles-reconciles0, errs-errs0, cpu.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
		rows = append(rows, batteryRow{"idle 30 s after the battery", "measured", fmt.Sprintf("%.0f reconciles, %.0f reconcile errors, CPU %v", reconciles-reconciles0, errs-errs0, cpu.Round(time.Millisecond))})
		g.Expect(reconciles-reconciles0).To(BeNumerically("<", 100), "the manager is not idle")
	})

	// Everything that should make progress did.
	t.Run("progress", func(t *testing.T) {
		g := NewWithT(t)
		// The waiting operations are admitted once their sessions exist here.
		g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns}})).To(Succeed())
		g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns}})).To(Succeed())
		for _, name := range []string{"orphan", "cross-ns"} {
			g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.PhaseProvisioning), name)
			o := getOp(ctx, ns, name)()
			g.Expect(condition(o, opsv1.ConditionStalled)).To(BeNil(), "%s: Stalled is gone", name)
			g.Expect(meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionReconciling)).To(BeTrue(), name)
		}
		g.Expect(countCustom(getOp(ctx, ns, "orphan")().Status.Conditions)).To(Equal(12))

		// Requests refused a change are still carried out as first written.
		g.Expect(phaseOf(ctx, ns, "cancel-me")()).To(Equal(opsv1.PhaseCancelled))
		g.Expect(getOp(ctx, ns, "cancel-me")().Status.Outcome.Reason).To(Equal(ptr.To("not needed")))
		g.Expect(phaseOf(ctx, ns, "abort-me")()).To(Equal(opsv1.PhaseAborted))
		g.Expect(reg.MarkRetired(ctx, "retire-me")).To(Succeed())
		g.Expect(phaseOf(ctx, ns, "retire-me")()).To(Equal(opsv1.PhaseRetired))
		g.Expect(phaseOf(ctx, ns, "term-op")()).To(Equal(opsv1.PhaseTerminated))

		// The targets of refused writes still work.
		g.Expect(reg.ReportProgress(ctx, run, opsclient.ProgressUpdate{Message: "still fine", Percent: ptr.To(0.5)})).To(Succeed())
		g.Expect(reg.PeerReady(ctx, run, peerHandle("run"))).To(Succeed())
		g.Expect(reg.CompleteOperation(ctx, run, opResult("done"))).To(Succeed())
		for _, name := range []string{"imm", "foreign-owner", "foreign-uid"} {
			if name == "imm" {
				g.Expect(reg.ProvisioningSucceeded(ctx, name)).To(Succeed())
			}
			g.Expect(reg.CompleteOperation(ctx, name, opResult("done"))).To(Succeed())
		}
		for _, name := range []string{run, "imm", "foreign-owner", "foreign-uid"} {
			g.Eventually(func() bool {
				return meta.IsStatusConditionTrue(getOp(ctx, ns, name)().Status.Conditions, opsv1.ConditionTerminal)
			}).Should(BeTrue(), name)
		}

		// A canary in a fresh session and namespace is admitted.
		_, canary := newRegistry(t, opsclient.SessionConfig{})
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		g.Expect(canary.RegisterOperation(cctx, opsclient.OperationSpec{ID: opsclient.NewOperationID(), Kind: opsv1.BackgroundToolOp})).
			To(Succeed(), "the canary was not admitted")

		// Nothing is stuck in deletion: a session deleted with a battery
		// operation (12 custom conditions, no owner reference) and a
		// terminated session both go, and so does the operation.
		for _, name := range []string{"later", "term"} {
			g.Expect(k8s.Delete(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
		}
		for _, name := range []string{"later", "term"} {
			g.Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &opsv1.OpsSession{}))
			}).Should(BeTrue(), "session %s is stuck in deletion", name)
		}
		for _, name := range []string{"orphan", "term-op"} {
			g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.OperationPhase("<absent>")), name)
		}

		// The controller never had a write refused, and never panicked.
		for _, n := range []string{ns, ns2} {
			var evs corev1.EventList
			g.Expect(k8s.List(ctx, &evs, client.InNamespace(n))).To(Succeed())
			for _, e := range evs.Items {
				g.Expect(e.Reason).NotTo(Equal("WriteRefused"), "%s/%s: %s", n, e.InvolvedObject.Name, e.Message)
			}
		}
		panics, _ := counterTotal("controller_runtime_reconcile_panics_total")
		errs, _ := counterTotal("controller_runtime_reconcile_errors_total")
		t.Logf("during the battery: %.0f reconcile panics, %.0f reconcile errors", panics-panics0, errs-errors0)
		g.Expect(panics - panics0).To(BeZero())
	})
}
