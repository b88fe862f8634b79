package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
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
	if kind == kindOperation {
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

// customConditions returns a status whose conditions are n of types the
// controller does not own, then one of each type in standard.
func customConditions(n int, standard ...string) map[string]any {
	now := metav1.NewTime(time.Now())
	conds := make([]metav1.Condition, 0, n+len(standard))
	cond := func(typ string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "BatteryTest", Message: "set by the battery", LastTransitionTime: now}
	}
	for i := range n {
		conds = append(conds, cond(fmt.Sprintf("battery.example.com/Custom%d", i)))
	}
	for _, s := range standard {
		conds = append(conds, cond(s))
	}
	return map[string]any{"conditions": conds}
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

func opRef(name string) objRef      { return objRef{kindOperation, name} }
func sessionRef(name string) objRef { return objRef{kindOpsSession, name} }

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

// Verdicts in the battery's report.
const (
	verdictRefused = "refused"
	verdictHandled = "handled"
)

// The battery's fixtures, by name.
const (
	// immName: an Operation with every identity field set, target of spec
	// changes and patches.
	immName = "imm"
	// termSession: the session the battery terminates.
	termSession = "term"
	// laterSession: a session created only at the end; its operation waits
	// for it until then.
	laterSession = "later"
	// elsewhereSession: a session in another namespace; at the end, one of
	// that name in the battery's namespace too.
	elsewhereSession = "elsewhere"
	// foreignOwner and foreignUID: operations owned, by UID, by the session
	// in the other namespace, under that session's name and under the local
	// session's name.
	foreignOwner = "foreign-owner"
	foreignUID   = "foreign-uid"
)

// unsupportedValue is how the API server refuses a value outside an enum.
const unsupportedValue = "Unsupported value"

// The CRDs' length limits, in characters.
const (
	maxTextLen    = 1024   // displayName, reasons, a peer's address
	maxNameLen    = 256    // sourceLabel, childSessionID, a peer's names
	maxMessageLen = 4096   // status.progress.message
	maxErrorLen   = 32768  // status.outcome.error
	maxContentLen = 262144 // status.outcome.result.content
)

// limit is how a message states a length limit.
func limit(n int) string { return strconv.Itoa(n) }

// long is a string of n characters.
func long(n int) string { return strings.Repeat("x", n) }

// specValue is a spec (or any object) with the one field set to v.
func specValue(field string, v any) map[string]any { return map[string]any{field: v} }

// request is a spec with the write-once request field (cancel, retire,
// abort, termination) set, with reason.
func request(field, reason string) map[string]any {
	return specValue(field, map[string]any{"reason": reason})
}

// statusPhase is a status in phase.
func statusPhase(phase string) map[string]any { return map[string]any{"phase": phase} }

// ended is a status in phase (none when "") with an outcome of type typ,
// plus the fields in extra.
func ended(phase, typ string, extra map[string]any) map[string]any {
	st := map[string]any{}
	if phase != "" {
		st = statusPhase(phase)
	}
	outcome := map[string]any{"type": typ}
	for k, v := range extra {
		outcome[k] = v
	}
	st["outcome"] = outcome
	return st
}

// failedWith is a Failed status with error msg.
func failedWith(msg string) map[string]any {
	return ended(string(opsv1.PhaseFailed), string(opsv1.PhaseFailed), map[string]any{"error": msg})
}

// completedWith is a Completed status with the result's content.
func completedWith(content string) map[string]any {
	return ended(string(opsv1.PhaseCompleted), string(opsv1.PhaseCompleted), map[string]any{"result": map[string]any{"content": content}})
}

// progress is a status whose progress has the one field set to v.
func progress(field string, v any) map[string]any {
	return map[string]any{"progress": specValue(field, v)}
}

// peerStatus is a peer-ready status with the handle's four strings.
func peerStatus(peerName, name, peerID, address string) map[string]any {
	return map[string]any{"peerReady": true, "peerHandle": map[string]any{"peerName": peerName,
		"trustedPeer": map[string]any{"name": name, "peerID": peerID, "address": address}}}
}

// battery is TestBadInput's state: the fixtures every phase uses, and the
// rows of its report.
type battery struct {
	ctx              context.Context
	reg              *opsclient.Registry
	ns, ns2, session string
	// run: a Running MobMemberChild, target of the agent's status writes.
	run string
	// elsewhere: a session in ns2.
	elsewhere *opsv1.OpsSession
	rows      []batteryRow
	// controller-runtime's counters when the battery started.
	panics0, reconciles0, errors0 float64
}

func TestBadInput(t *testing.T) {
	// A fresh context for the whole battery, longer than testContext's: the
	// idle window alone is 30 s.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(testContext(t)), 5*time.Minute)
	defer cancel()
	b := newBattery(ctx, t)
	defer b.report(t)

	// Write-once requests: set them (accepted, carried out), then try to
	// change and clear them.
	t.Run("write-once requests are carried out", b.writeOnce)
	t.Run("refused", func(t *testing.T) {
		for _, c := range b.refusals() {
			t.Run(c.name, func(t *testing.T) { b.checkRefusal(t, c) })
		}
	})
	// Values at the limits are accepted (dry run: nothing stored).
	t.Run("limits are inclusive", b.limitsInclusive)
	// Accepted and handled by the controller.
	t.Run("handled", b.handled)
	// The manager is idle: everything above settled, nothing retries.
	t.Run("idle", b.idle)
	// Everything that should make progress did.
	t.Run("progress", b.progress)
}

// newBattery makes the fixtures: a session with a Running operation (run),
// an Operation with every identity field set (imm), and a session in
// another namespace (elsewhere).
func newBattery(ctx context.Context, t *testing.T) *battery {
	t.Helper()
	g := NewWithT(t)
	b := &battery{ctx: ctx}
	var err error
	b.panics0, err = counterTotal("controller_runtime_reconcile_panics_total")
	g.Expect(err).NotTo(HaveOccurred())
	b.reconciles0, _ = counterTotal("controller_runtime_reconcile_total")
	b.errors0, _ = counterTotal("controller_runtime_reconcile_errors_total")

	_, b.reg = newRegistry(t, opsclient.SessionConfig{})
	b.ns, b.session = b.reg.Namespace(), b.reg.Session()
	b.ns2 = newNamespace(t)

	runSpec := mobMemberSpec("run")
	g.Expect(b.reg.RegisterOperation(ctx, runSpec)).To(Succeed())
	g.Expect(b.reg.ProvisioningSucceeded(ctx, runSpec.ID)).To(Succeed())
	b.run = runSpec.ID
	g.Expect(k8s.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: immName, Namespace: b.ns},
		Spec: opsv1.OperationSpec{SessionName: b.session, Kind: opsv1.MobMemberChild, DisplayName: immName,
			SourceLabel: "battery", ChildSessionID: "child", ExpectPeerChannel: true}})).To(Succeed())
	g.Eventually(phaseOf(ctx, b.ns, immName)).Should(Equal(opsv1.PhaseProvisioning))
	b.elsewhere = &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: elsewhereSession, Namespace: b.ns2}}
	g.Expect(k8s.Create(ctx, b.elsewhere)).To(Succeed())
	return b
}

// report logs the battery's rows as the lines of a Markdown table.
func (b *battery) report(t *testing.T) {
	var sb strings.Builder
	for _, r := range b.rows {
		fmt.Fprintf(&sb, "\n| %s | %s | %s |", r.name, r.verdict, r.message)
	}
	t.Logf("battery report:%s", sb.String())
}

// createOp is a write creating Operation name in the battery's session,
// with the fields of spec.
func (b *battery) createOp(name string, spec map[string]any) func() error {
	return func() error { return k8s.Create(b.ctx, unstructuredOp(b.ns, name, b.session, spec)) }
}

// createSession is a write creating OpsSession name with spec.
func (b *battery) createSession(name string, spec map[string]any) func() error {
	return func() error { return k8s.Create(b.ctx, unstructuredSession(b.ns, name, spec)) }
}

// patch is a write patching kind/name with body, as c.
func (b *battery) patch(c client.Client, kind, name string, pt types.PatchType, body string) func() error {
	return func() error {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(opsv1.GroupVersion.String())
		u.SetKind(kind)
		u.SetNamespace(b.ns)
		u.SetName(name)
		return c.Patch(b.ctx, u, client.RawPatch(pt, []byte(body)))
	}
}

// mergeOp is a merge patch of Operation name, as the editor.
func (b *battery) mergeOp(name, body string) func() error {
	return b.patch(k8s, kindOperation, name, types.MergePatchType, body)
}

// mergeSession is a merge patch of OpsSession name, as the editor.
func (b *battery) mergeSession(name, body string) func() error {
	return b.patch(k8s, kindOpsSession, name, types.MergePatchType, body)
}

// status is a merge patch of Operation name's status, as c.
func (b *battery) status(c client.Client, name string, st map[string]any) func() error {
	return func() error { return patchStatus(b.ctx, c, b.ns, name, st) }
}

// badSessionValue: creating OpsSession obj with spec.field v is refused,
// naming the field and saying says.
func (b *battery) badSessionValue(obj, field, label string, v any, says ...string) refusal {
	return refusal{name: field + " " + label, write: b.createSession(obj, specValue(field, v)),
		says: append([]string{"spec." + field}, says...), target: sessionRef(obj)}
}

// badSessionPatch: merge-patching the battery's session with body, which
// sets spec.field, is refused, naming the field and saying says.
func (b *battery) badSessionPatch(field, label, body string, says ...string) refusal {
	return refusal{name: field + " " + label, write: b.mergeSession(b.session, body),
		says: append([]string{"spec." + field}, says...), target: sessionRef(b.session)}
}

// badOpValue: creating Operation obj with spec.field v is refused, naming
// the field and saying says.
func (b *battery) badOpValue(obj, field, label string, v any, says ...string) refusal {
	return refusal{name: field + " " + label, write: b.createOp(obj, specValue(field, v)),
		says: append([]string{"spec." + field}, says...), target: opRef(obj)}
}

// badRunStatus: the agent's status write st on run is refused, saying says.
func (b *battery) badRunStatus(name string, st map[string]any, says ...string) refusal {
	return refusal{name: name, write: b.status(agent, b.run, st), says: says, target: opRef(b.run)}
}

// writeOnce sets each write-once request, which the controller carries out.
func (b *battery) writeOnce(t *testing.T) {
	g, ctx, ns := NewWithT(t), b.ctx, b.ns
	createOp(ctx, g, ns, "cancel-me", b.session)
	g.Expect(b.mergeOp("cancel-me", `{"spec":{"cancel":{"reason":"not needed"}}}`)()).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "cancel-me")).Should(Equal(opsv1.PhaseCancelled))
	g.Eventually(eventReasons(ctx, ns, "cancel-me")).Should(ContainElement("Cancelled"))

	abortSpec := backgroundSpec("abort-me")
	abortSpec.ID = "abort-me"
	g.Expect(b.reg.RegisterOperation(ctx, abortSpec)).To(Succeed())
	g.Expect(b.mergeOp("abort-me", `{"spec":{"abort":{"reason":"mob stopping"}}}`)()).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "abort-me")).Should(Equal(opsv1.PhaseAborted))
	g.Eventually(eventReasons(ctx, ns, "abort-me")).Should(ContainElement("Aborted"))

	retireSpec := backgroundSpec("retire-me")
	retireSpec.ID = "retire-me"
	g.Expect(b.reg.RegisterOperation(ctx, retireSpec)).To(Succeed())
	g.Expect(b.reg.ProvisioningSucceeded(ctx, "retire-me")).To(Succeed())
	g.Expect(b.mergeOp("retire-me", `{"spec":{"retire":{}}}`)()).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "retire-me")).Should(Equal(opsv1.PhaseRetiring))
	g.Eventually(eventReasons(ctx, ns, "retire-me")).Should(ContainElement("Retiring"))

	g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: termSession, Namespace: ns}})).To(Succeed())
	createOp(ctx, g, ns, "term-op", termSession)
	g.Eventually(phaseOf(ctx, ns, "term-op")).Should(Equal(opsv1.PhaseProvisioning))
	g.Expect(b.mergeSession(termSession, `{"spec":{"termination":{"reason":"mob disbanded"}}}`)()).To(Succeed())
	g.Eventually(phaseOf(ctx, ns, "term-op")).Should(Equal(opsv1.PhaseTerminated))
	g.Eventually(func() bool {
		s := &opsv1.OpsSession{}
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: termSession}, s) == nil &&
			meta.IsStatusConditionTrue(s.Status.Conditions, opsv1.ConditionTerminated)
	}).Should(BeTrue())
	b.rows = append(b.rows,
		batteryRow{"set spec.cancel (Pending op)", verdictHandled, "phase Cancelled, event Cancelled"},
		batteryRow{"set spec.abort (Provisioning op)", verdictHandled, "phase Aborted, event Aborted"},
		batteryRow{"set spec.retire (Running op)", verdictHandled, "phase Retiring, event Retiring"},
		batteryRow{"set session spec.termination", verdictHandled, "op Terminated, session condition Terminated=True"})
}

// refusals are the writes the API server must refuse.
func (b *battery) refusals() []refusal {
	immRef, sessRef := opRef(immName), sessionRef(b.session)
	return []refusal{
		// Limits and enums on a session.
		b.badSessionValue("mc-neg", "maxConcurrent", "-1", int64(-1)),
		b.badSessionValue("mc-big", "maxConcurrent", "10001", int64(10001)),
		b.badSessionValue("mc-2p31", "maxConcurrent", "2^31", int64(1)<<31),
		b.badSessionValue("mc-2p63", "maxConcurrent", "2^63-1", int64(1<<63-1)),
		b.badSessionValue("mk-neg", "maxCompleted", "-1", int64(-1)),
		b.badSessionValue("mk-big", "maxCompleted", "1000001", int64(1000001)),
		b.badSessionValue("mk-2p31", "maxCompleted", "2^31", int64(1)<<31),
		b.badSessionPatch("maxConcurrent", "-1 by patch", `{"spec":{"maxConcurrent":-1}}`),
		b.badSessionPatch("maxCompleted", "2^31 by patch", `{"spec":{"maxCompleted":2147483648}}`),
		b.badSessionValue("pol", "admissionPolicy", "Maybe", "Maybe", unsupportedValue),
		b.badSessionPatch("admissionPolicy", "lower-case by patch", `{"spec":{"admissionPolicy":"queue"}}`),
		{name: "termination reason 1025 chars", write: b.createSession("term-long", request("termination", long(maxTextLen+1))), says: []string{"spec.termination.reason"}, target: sessionRef("term-long")},
		{name: "termination reason empty", write: b.createSession("term-empty", request("termination", "")), says: []string{"spec.termination.reason"}, target: sessionRef("term-empty")},

		// Enums and strings on an operation's spec.
		b.badOpValue("bad-kind", "kind", "CronJob", "CronJob", unsupportedValue),
		b.badOpValue("dn-long", "displayName", "1025 chars", long(maxTextLen+1), limit(maxTextLen)),
		b.badOpValue("dn-1mb", "displayName", "1 MB", long(1<<20), limit(maxTextLen)),
		b.badOpValue("sl-long", "sourceLabel", "257 chars", long(maxNameLen+1), limit(maxNameLen)),
		b.badOpValue("cs-long", "childSessionID", "257 chars", long(maxNameLen+1), limit(maxNameLen)),
		{name: "cancel reason 1025 chars", write: b.createOp("cr-long", request("cancel", long(maxTextLen+1))), says: []string{"spec.cancel.reason", limit(maxTextLen)}, target: opRef("cr-long")},
		{name: "retire reason 1025 chars", write: b.createOp("rr-long", request("retire", long(maxTextLen+1))), says: []string{"spec.retire.reason", limit(maxTextLen)}, target: opRef("rr-long")},
		{name: "abort reason 1025 chars by patch", write: b.mergeOp(immName, fmt.Sprintf(`{"spec":{"abort":{"reason":%q}}}`, long(maxTextLen+1))), says: []string{"spec.abort.reason", limit(maxTextLen)}, target: immRef},
		b.badOpValue("sn-bad", "sessionName", "not a DNS name", "Not_A_Name"),

		// The agent's status writes.
		b.badRunStatus("phase Bogus", statusPhase("Bogus"), "status.phase", unsupportedValue),
		b.badRunStatus("progress percent -0.1", progress("percent", -0.1), "status.progress.percent"),
		b.badRunStatus("progress percent 1.5", progress("percent", 1.5), "status.progress.percent"),
		b.badRunStatus("progress message 4097 chars", progress("message", long(maxMessageLen+1)), "status.progress.message", limit(maxMessageLen)),
		b.badRunStatus("outcome type Bogus", ended(string(opsv1.PhaseFailed), "Bogus", map[string]any{"error": "x"}), "status.outcome.type", unsupportedValue),
		// The schema's enum for outcome.type is the phase enum (all eleven
		// phases); the CEL rules refuse the non-terminal ones.
		b.badRunStatus("outcome type Pending in phase Running", ended("", string(opsv1.PhasePending), nil),
			"status.outcome is only allowed in a terminal phase, not Running"),
		b.badRunStatus("outcome type Rejected in phase Failed", ended(string(opsv1.PhaseFailed), string(opsv1.PhaseRejected), nil),
			"status.outcome.type Rejected does not match phase Failed", "outcome.type must be a terminal phase (Completed, Failed, Aborted, Cancelled, Retired or Terminated), not Rejected"),
		b.badRunStatus("outcome error 32769 chars", failedWith(long(maxErrorLen+1)), "status.outcome.error", limit(maxErrorLen)),
		b.badRunStatus("outcome content 262145 chars", completedWith(long(maxContentLen+1)), "status.outcome.result.content", limit(maxContentLen)),
		b.badRunStatus("peerHandle.peerName 257 chars", peerStatus(long(maxNameLen+1), "p", "p-id", "inproc://p"), "status.peerHandle.peerName", limit(maxNameLen)),
		b.badRunStatus("peerHandle.trustedPeer.name 257 chars", peerStatus("p", long(maxNameLen+1), "p-id", "inproc://p"), "status.peerHandle.trustedPeer.name", limit(maxNameLen)),
		b.badRunStatus("peerHandle.trustedPeer.peerID 257 chars", peerStatus("p", "p", long(maxNameLen+1), "inproc://p"), "status.peerHandle.trustedPeer.peerID", limit(maxNameLen)),
		b.badRunStatus("peerHandle.trustedPeer.address 1025 chars", peerStatus("p", "p", "p-id", long(maxTextLen+1)), "status.peerHandle.trustedPeer.address", limit(maxTextLen)),
		b.badRunStatus("peerHandle.peerName empty", peerStatus("", "p", "p-id", "inproc://p"), "status.peerHandle.peerName"),
		{name: "rejection reason Bogus (controller identity)", write: b.status(controllerIdentity, immName, request("rejection", "Bogus")), says: []string{"status.rejection.reason", unsupportedValue}, target: immRef},
		b.badRunStatus("17 conditions", customConditions(13, "Terminal", "Ready", "Reconciling", "Stalled"), "status.conditions", "must have at most 16 items"),
		b.badRunStatus("13 custom conditions", customConditions(13), "status.conditions", "at most 12 conditions besides Terminal, Ready, Reconciling and Stalled"),

		// Immutable identity.
		{name: "change sessionName", write: b.mergeOp(immName, `{"spec":{"sessionName":"other"}}`), says: []string{"spec.sessionName is immutable"}, target: immRef},
		{name: "change kind", write: b.mergeOp(immName, `{"spec":{"kind":"BackgroundToolOp"}}`), says: []string{"spec.kind is immutable"}, target: immRef},
		{name: "change displayName", write: b.mergeOp(immName, `{"spec":{"displayName":"renamed"}}`), says: []string{"spec.displayName is immutable"}, target: immRef},
		{name: "remove displayName", write: b.mergeOp(immName, `{"spec":{"displayName":null}}`), says: []string{"spec.displayName is immutable"}, target: immRef},
		{name: "change sourceLabel", write: b.mergeOp(immName, `{"spec":{"sourceLabel":"other"}}`), says: []string{"spec.sourceLabel is immutable"}, target: immRef},
		{name: "change childSessionID", write: b.mergeOp(immName, `{"spec":{"childSessionID":"other"}}`), says: []string{"spec.childSessionID is immutable"}, target: immRef},
		{name: "change expectPeerChannel", write: b.mergeOp(immName, `{"spec":{"expectPeerChannel":false}}`), says: []string{"spec.expectPeerChannel is immutable"}, target: immRef},

		// Write-once requests, set by writeOnce.
		{name: "change spec.cancel reason", write: b.mergeOp("cancel-me", `{"spec":{"cancel":{"reason":"changed my mind"}}}`), says: []string{"spec.cancel is write-once"}, target: opRef("cancel-me")},
		// Removing a request is allowed once the operation is final (a GitOps
		// tool removing it from Git; gitops_test.go); changing one never is.
		{name: "change spec.abort reason", write: b.mergeOp("abort-me", `{"spec":{"abort":{"reason":"other"}}}`), says: []string{"spec.abort is write-once"}, target: opRef("abort-me")},
		{name: "clear spec.retire", write: b.mergeOp("retire-me", `{"spec":{"retire":null}}`), says: []string{"spec.retire is write-once"}, target: opRef("retire-me")},
		{name: "add spec.retire reason", write: b.mergeOp("retire-me", `{"spec":{"retire":{"reason":"late"}}}`), says: []string{"spec.retire is write-once"}, target: opRef("retire-me")},
		{name: "clear session spec.termination", write: b.mergeSession(termSession, `{"spec":{"termination":null}}`), says: []string{"spec.termination is write-once"}, target: sessionRef(termSession)},
		{name: "change session spec.termination reason", write: b.mergeSession(termSession, `{"spec":{"termination":{"reason":"other"}}}`), says: []string{"spec.termination is write-once"}, target: sessionRef(termSession)},

		// Malformed patches and wrong types.
		{name: "invalid JSON merge patch body", write: b.mergeSession(b.session, `{"spec":{"maxConcurrent":`), code: 400, says: []string{"JSON"}, target: sessRef},
		// kube-apiserver v1.37 answers a JSON patch it cannot apply with a
		// generic 422 and drops the detail (handlers/patch.go builds it with
		// NewGenericServerResponse(..., isUnexpectedResponse=false)): the
		// refusal is clear, the reason is not. Upstream, not ours to mend.
		{name: "JSON patch with op frobnicate", write: b.patch(k8s, kindOperation, immName, types.JSONPatchType, `[{"op":"frobnicate","path":"/spec/displayName","value":"x"}]`), code: 422, says: []string{"rejected our request"}, target: immRef},
		{name: "JSON patch with a missing path", write: b.patch(k8s, kindOperation, immName, types.JSONPatchType, `[{"op":"replace","path":"/spec/no/such","value":"x"}]`), code: 422, says: []string{"rejected our request"}, target: immRef},
		{name: "JSON patch replacing spec.sessionName", write: b.patch(k8s, kindOperation, immName, types.JSONPatchType, `[{"op":"replace","path":"/spec/sessionName","value":"other"}]`), says: []string{"spec.sessionName is immutable"}, target: immRef},
		{name: "JSON patch that is not a list", write: b.patch(k8s, kindOperation, immName, types.JSONPatchType, `{"op":"replace","path":"/spec/displayName","value":"x"}`), code: 400, says: []string{"json"}, target: immRef},
		{name: "strategic merge patch on a CR", write: b.patch(k8s, kindOpsSession, b.session, types.StrategicMergePatchType, `{"spec":{"maxConcurrent":5}}`), code: 415, says: []string{"application/merge-patch+json"}, target: sessRef},
		b.badSessionPatch("maxConcurrent", `"five"`, `{"spec":{"maxConcurrent":"five"}}`, "integer"),
		b.badSessionValue("five", "maxConcurrent", `"five" at creation`, "five", "integer"),
		b.badRunStatus(`progress percent "half"`, progress("percent", "half"), "status.progress.percent", "number"),
		{name: "spec a string", write: b.mergeOp(immName, `{"spec":"oops"}`), says: []string{"spec in body must be of type object"}, target: immRef},
	}
}

// checkRefusal makes c's write, which must be refused as c says and leave
// its target unchanged.
func (b *battery) checkRefusal(t *testing.T, c refusal) {
	before, err := stored(b.ctx, c.target.kind, b.ns, c.target.name)
	if err != nil {
		t.Fatal(err)
	}
	err = c.write()
	if err == nil {
		b.rows = append(b.rows, batteryRow{c.name, "ACCEPTED (bug)", ""})
		t.Fatalf("accepted; want a refusal naming %q", c.says)
	}
	msg := err.Error()
	short := msg
	if len(short) > 600 {
		short = short[:600] + fmt.Sprintf("... (%d bytes)", len(msg))
	}
	b.rows = append(b.rows, batteryRow{c.name, verdictRefused, short})
	want := c.code
	if want == 0 {
		want = 422
	}
	apiStatus, ok := err.(apierrors.APIStatus)
	if !ok {
		t.Fatalf("not an API status error: %T %v", err, err)
	}
	if got := apiStatus.Status().Code; got != want {
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
	after, err := stored(b.ctx, c.target.kind, b.ns, c.target.name)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("%s %s changed:\nbefore %.400s\nafter  %.400s", c.target.kind, c.target.name, before, after)
	}
}

// limitsInclusive: values at the limits are accepted (dry run: nothing
// stored).
func (b *battery) limitsInclusive(t *testing.T) {
	dry := func(o *unstructured.Unstructured) func() error {
		return func() error { return k8s.Create(b.ctx, o, client.DryRunAll) }
	}
	drySession := func(spec map[string]any) func() error { return dry(unstructuredSession(b.ns, "edge", spec)) }
	dryOp := func(spec map[string]any) func() error { return dry(unstructuredOp(b.ns, "edge", b.session, spec)) }
	dryStatus := func(st map[string]any) func() error {
		return func() error {
			body, _ := json.Marshal(map[string]any{"status": st})
			return agent.Status().Patch(b.ctx, unstructuredOp(b.ns, b.run, "", nil), client.RawPatch(types.MergePatchType, body), client.DryRunAll)
		}
	}
	for name, write := range map[string]func() error{
		"maxConcurrent 0":           drySession(specValue("maxConcurrent", int64(0))),
		"maxConcurrent 10000":       drySession(specValue("maxConcurrent", int64(10000))),
		"maxCompleted 0":            drySession(specValue("maxCompleted", int64(0))),
		"maxCompleted 1000000":      drySession(specValue("maxCompleted", int64(1000000))),
		"termination reason 1024":   drySession(request("termination", long(maxTextLen))),
		"displayName 1024":          dryOp(specValue("displayName", long(maxTextLen))),
		"sourceLabel 256":           dryOp(specValue("sourceLabel", long(maxNameLen))),
		"childSessionID 256":        dryOp(specValue("childSessionID", long(maxNameLen))),
		"cancel reason 1024":        dryOp(request("cancel", long(maxTextLen))),
		"percent 0":                 dryStatus(progress("percent", float64(0))),
		"percent 1":                 dryStatus(progress("percent", float64(1))),
		"progress message 4096":     dryStatus(progress("message", long(maxMessageLen))),
		"outcome error 32768":       dryStatus(failedWith(long(maxErrorLen))),
		"outcome content 262144":    dryStatus(completedWith(long(maxContentLen))),
		"peer handle at its limits": dryStatus(peerStatus(long(maxNameLen), long(maxNameLen), long(maxNameLen), long(maxTextLen))),
		"16 conditions, 12 custom":  dryStatus(customConditions(12, "Terminal", "Ready", "Reconciling", "Stalled")),
	} {
		if err := write(); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
}

// handled: input the API server accepts is handled by the controller, with
// a condition.
func (b *battery) handled(t *testing.T) {
	g, ctx, ns := NewWithT(t), b.ctx, b.ns
	stalled := func(name string) func() string {
		return func() string {
			if c := condition(getOp(ctx, ns, name)(), opsv1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
				return c.Reason + ": " + c.Message
			}
			return ""
		}
	}
	// A missing session: the operation waits, Stalled/SessionNotFound.
	createOp(ctx, g, ns, "orphan", laterSession)
	g.Eventually(stalled("orphan")).Should(HavePrefix(opsv1.ReasonSessionNotFound + `: OpsSession "` + laterSession + `" does not exist in namespace ` + ns))
	// With 12 custom conditions written by the agent (a merge patch
	// replaces the list), the controller still fits all four of its own.
	g.Expect(patchStatus(ctx, agent, ns, "orphan", customConditions(12))).To(Succeed())
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
	b.rows = append(b.rows, batteryRow{"missing session", verdictHandled, "Pending, Stalled=True reason SessionNotFound: " + stalled("orphan")()})
	b.rows = append(b.rows, batteryRow{"12 custom conditions on a Pending op waiting for its session", verdictHandled, "accepted; controller re-adds Terminal, Ready and Stalled (15 in all; Reconciling stays away while Stalled)"})

	// A session in another namespace is a missing session.
	createOp(ctx, g, ns, "cross-ns", elsewhereSession)
	g.Eventually(stalled("cross-ns")).Should(HavePrefix(opsv1.ReasonSessionNotFound + `: OpsSession "` + elsewhereSession + `" does not exist in namespace ` + ns))
	b.rows = append(b.rows, batteryRow{"session only in another namespace", verdictHandled, "Pending, Stalled=True: " + stalled("cross-ns")()})

	// Owner references to a session UID from another namespace.
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b.elsewhere), b.elsewhere)).To(Succeed())
	uid := b.elsewhere.UID
	for name, ownerName := range map[string]string{foreignOwner: elsewhereSession, foreignUID: b.session} {
		o := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: opsv1.GroupVersion.String(), Kind: kindOpsSession,
				Name: ownerName, UID: uid, Controller: ptr.To(true)}}},
			Spec: opsv1.OperationSpec{SessionName: b.session, Kind: opsv1.BackgroundToolOp, DisplayName: name}}
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
		g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.PhaseProvisioning))
		g.Expect(b.reg.ProvisioningSucceeded(ctx, name)).To(Succeed())
		g.Eventually(func() bool {
			return meta.IsStatusConditionTrue(getOp(ctx, ns, name)().Status.Conditions, opsv1.ConditionReady)
		}).Should(BeTrue())
	}
	b.rows = append(b.rows, batteryRow{"ownerReference to a session UID in another namespace (name of that session / of the local one)", verdictHandled, "admitted by its own session like any other (Provisioning, then Running, Ready=True)"})

	// 12 custom conditions on a Running operation: accepted, and the
	// controller puts back its own (the merge patch replaced the list).
	customSpec := backgroundSpec("custom-conds")
	customSpec.ID = "custom-conds"
	g.Expect(b.reg.RegisterOperation(ctx, customSpec)).To(Succeed())
	g.Expect(b.reg.ProvisioningSucceeded(ctx, "custom-conds")).To(Succeed())
	g.Expect(patchStatus(ctx, agent, ns, "custom-conds", customConditions(12))).To(Succeed())
	g.Eventually(func() bool {
		o := getOp(ctx, ns, "custom-conds")()
		return countCustom(o.Status.Conditions) == 12 &&
			meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionReady) &&
			meta.IsStatusConditionFalse(o.Status.Conditions, opsv1.ConditionTerminal)
	}).Should(BeTrue(), "Ready and Terminal are back beside the 12 custom conditions")
	// It still finishes, with its Terminal condition.
	g.Expect(b.reg.FailOperation(ctx, "custom-conds", "failed on purpose")).To(Succeed())
	g.Eventually(func() bool {
		o := getOp(ctx, ns, "custom-conds")()
		return countCustom(o.Status.Conditions) == 12 &&
			meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionTerminal) &&
			meta.IsStatusConditionTrue(o.Status.Conditions, opsv1.ConditionStalled)
	}).Should(BeTrue())
	b.rows = append(b.rows, batteryRow{"12 custom conditions on a Running op", verdictHandled, "accepted; controller re-adds Ready=True, Terminal=False (14); Failed later gives Terminal=True, Stalled=True with the 12 kept"})

	// Deleting the foreign owner changes nothing here.
	g.Expect(k8s.Delete(ctx, b.elsewhere)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(b.elsewhere), &opsv1.OpsSession{}))
	}).Should(BeTrue())
	for _, name := range []string{foreignOwner, foreignUID} {
		g.Expect(phaseOf(ctx, ns, name)()).To(Equal(opsv1.PhaseRunning), "%s after its foreign owner was deleted", name)
	}
}

// idle: 30 s after the battery, the manager reconciles (next to) nothing.
func (b *battery) idle(t *testing.T) {
	g := NewWithT(t)
	reconciles0, err := counterTotal("controller_runtime_reconcile_total")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reconciles0).To(BeNumerically(">", b.reconciles0), "the battery's reconciles were not counted: wrong metric?")
	errs0, _ := counterTotal("controller_runtime_reconcile_errors_total")
	cpu0, start := cpuTime(), time.Now()
	time.Sleep(30 * time.Second)
	cpu, wall := cpuTime()-cpu0, time.Since(start)
	reconciles, _ := counterTotal("controller_runtime_reconcile_total")
	errs, _ := counterTotal("controller_runtime_reconcile_errors_total")
	t.Logf("idle window %v: %.0f reconciles (%.0f errors), CPU %v (%.1f%% of one core)",
		wall.Round(time.Millisecond), reconciles-reconciles0, errs-errs0, cpu.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
	b.rows = append(b.rows, batteryRow{"idle 30 s after the battery", "measured", fmt.Sprintf("%.0f reconciles, %.0f reconcile errors, CPU %v", reconciles-reconciles0, errs-errs0, cpu.Round(time.Millisecond))})
	g.Expect(reconciles-reconciles0).To(BeNumerically("<", 100), "the manager is not idle")
}

// progress: everything that should make progress did, and the controller
// never had a write refused nor panicked.
func (b *battery) progress(t *testing.T) {
	g, ctx, ns := NewWithT(t), b.ctx, b.ns
	// The waiting operations are admitted once their sessions exist here.
	g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: laterSession, Namespace: ns}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: elsewhereSession, Namespace: ns}})).To(Succeed())
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
	g.Expect(b.reg.MarkRetired(ctx, "retire-me")).To(Succeed())
	g.Expect(phaseOf(ctx, ns, "retire-me")()).To(Equal(opsv1.PhaseRetired))
	g.Expect(phaseOf(ctx, ns, "term-op")()).To(Equal(opsv1.PhaseTerminated))

	// The targets of refused writes still work.
	g.Expect(b.reg.ReportProgress(ctx, b.run, opsclient.ProgressUpdate{Message: "still fine", Percent: ptr.To(0.5)})).To(Succeed())
	g.Expect(b.reg.PeerReady(ctx, b.run, peerHandle("run"))).To(Succeed())
	g.Expect(b.reg.CompleteOperation(ctx, b.run, opResult("done"))).To(Succeed())
	g.Expect(b.reg.ProvisioningSucceeded(ctx, immName)).To(Succeed())
	for _, name := range []string{immName, foreignOwner, foreignUID} {
		g.Expect(b.reg.CompleteOperation(ctx, name, opResult("done"))).To(Succeed())
	}
	for _, name := range []string{b.run, immName, foreignOwner, foreignUID} {
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
	for _, name := range []string{laterSession, termSession} {
		g.Expect(k8s.Delete(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
	}
	for _, name := range []string{laterSession, termSession} {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &opsv1.OpsSession{}))
		}).Should(BeTrue(), "session %s is stuck in deletion", name)
	}
	for _, name := range []string{"orphan", "term-op"} {
		g.Eventually(phaseOf(ctx, ns, name)).Should(Equal(opsv1.OperationPhase("<absent>")), name)
	}

	// The controller never had a write refused, and never panicked.
	for _, n := range []string{ns, b.ns2} {
		var evs corev1.EventList
		g.Expect(k8s.List(ctx, &evs, client.InNamespace(n))).To(Succeed())
		for _, e := range evs.Items {
			g.Expect(e.Reason).NotTo(Equal("WriteRefused"), "%s/%s: %s", n, e.InvolvedObject.Name, e.Message)
		}
	}
	panics, _ := counterTotal("controller_runtime_reconcile_panics_total")
	errs, _ := counterTotal("controller_runtime_reconcile_errors_total")
	t.Logf("during the battery: %.0f reconcile panics, %.0f reconcile errors", panics-b.panics0, errs-b.errors0)
	g.Expect(panics - b.panics0).To(BeZero())
}
