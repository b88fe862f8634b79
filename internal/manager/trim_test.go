package manager

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

// The trimmed cache view must decide as the whole objects do: admission
// and retention run on the manager's cache, which holds finished operations
// only as far as trimFinished keeps them.

const (
	disbanded = "mob disbanded"
	// terminationDoneKey marks a test session whose termination was carried
	// out (the controller reads that from its Terminated condition).
	terminationDoneKey = "test/termination-done"
)

var trimT0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// bigResult is the size of result the API allows and the trim exists for.
var bigResult = strings.Repeat("r", 256<<10)

// step is one call made on an operation, seconds after its registration.
type step struct {
	call lifecycle.Call
	args lifecycle.Args
}

// registered is an operation as a client creates it: creationTimestamp at
// the API server's second, the created-at annotation at microseconds.
func registered(name, session string, at time.Time) *opsv1.Operation {
	return &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(at.Truncate(time.Second)),
			Annotations: map[string]string{
				opsv1.AnnotationCreatedAt:            at.Format(time.RFC3339Nano),
				"kubectl.kubernetes.io/last-applied": strings.Repeat("{}", 100),
			},
			Labels:        map[string]string{"team": "a"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "opsclient", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp,
			DisplayName: "display " + name, SourceLabel: "source"},
	}
}

// run makes the calls on op, one second apart, from its registration.
func run(t testing.TB, op *opsv1.Operation, steps ...step) *opsv1.Operation {
	t.Helper()
	now := lifecycle.RegisteredAt(op).Time
	for _, s := range steps {
		now = now.Add(time.Second)
		if err := lifecycle.Apply(op, s.call, s.args, now); err != nil {
			t.Fatalf("%s: %v", op.Name, err)
		}
	}
	return op
}

var (
	admit     = step{call: lifecycle.Admit}
	started   = step{call: lifecycle.ProvisioningSucceeded}
	progress  = step{call: lifecycle.ReportProgress, args: lifecycle.Args{Message: strings.Repeat("p", 1000), Percent: ptr.To(50.0)}}
	completed = step{call: lifecycle.CompleteOperation, args: lifecycle.Args{Result: &opsv1.OperationResult{Content: bigResult}}}
	failed    = step{call: lifecycle.FailOperation, args: lifecycle.Args{Error: strings.Repeat("e", 4096)}}
	cancelled = step{call: lifecycle.CancelOperation, args: lifecycle.Args{Reason: ptr.To("not needed")}}
	retire    = step{call: lifecycle.RequestRetire}
	retired   = step{call: lifecycle.MarkRetired}
	aborted   = step{call: lifecycle.AbortProvisioning, args: lifecycle.Args{Reason: ptr.To("mob stopping")}}
	term      = step{call: lifecycle.TerminateOwner, args: lifecycle.Args{Reason: ptr.To(disbanded)}}
	full      = step{call: lifecycle.Reject, args: lifecycle.Args{Rejection: &opsv1.Rejection{
		Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: ptr.To[int32](1), Active: ptr.To[int32](1)}}}
)

// lifecycles are the paths an operation can have taken so far, to each phase.
var lifecycles = [][]step{
	nil,                                // Pending
	{admit},                            // Provisioning
	{admit, started},                   // Running
	{admit, started, progress, retire}, // Retiring
	{admit, started, progress, completed},
	{admit, started, failed},
	{admit, failed},
	{admit, aborted},
	{cancelled},
	{admit, started, cancelled},
	{admit, started, retire, retired},
	{term},
	{admit, started, term},
	{full},
}

type trimCase struct {
	name     string
	sessions []*opsv1.OpsSession
	ops      []*opsv1.Operation
	// gone are ledger names a live read confirmed absent, per session.
	gone map[string]map[string]bool
}

// decision is what admission and retention decided, by operation name.
type decision struct {
	Ledger                          []opsv1.LedgerEntry
	LedgerChanged                   bool
	Admit, Queue, Terminate         []string
	Reject                          []string
	Rejections                      []opsv1.Rejection
	Limit, Active, Queued, Finished int
	Evict                           []string
}

func namesOf(ops []*opsv1.Operation) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Name)
	}
	return out
}

// decide runs admission and retention for sess over ops the way the
// session controller does: the session's operations, from the index.
func decide(sess *opsv1.OpsSession, all []*opsv1.Operation, gone map[string]bool) decision {
	var ops []*opsv1.Operation
	for _, op := range all {
		if op.Spec.SessionName == sess.Name {
			ops = append(ops, op)
		}
	}
	done := terminationDone(sess)
	p := admission.Decide(admission.Input{Session: sess, Ops: ops, Gone: gone, TerminationDone: done})
	d := decision{Ledger: p.Ledger, LedgerChanged: p.LedgerChanged,
		Admit: namesOf(p.Admit), Queue: namesOf(p.Queue), Terminate: namesOf(p.Terminate),
		Limit: p.Limit, Active: p.Active, Queued: p.Queued, Finished: p.Finished,
		Evict: namesOf(retention.Evict(ops, sess.Spec.MaxCompleted)),
	}
	for _, r := range p.Reject {
		d.Reject = append(d.Reject, r.Op.Name)
		d.Rejections = append(d.Rejections, r.Rejection)
	}
	return d
}

func terminationDone(sess *opsv1.OpsSession) bool {
	return sess.Annotations[terminationDoneKey] != ""
}

// trimmed returns deep copies of ops as the cache holds them.
func trimmed(t testing.TB, ops []*opsv1.Operation) []*opsv1.Operation {
	t.Helper()
	out := make([]*opsv1.Operation, len(ops))
	for i, op := range ops {
		obj, err := trimFinished(op.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		out[i] = obj.(*opsv1.Operation)
	}
	return out
}

func checkSameDecisions(t *testing.T, tc trimCase) {
	t.Helper()
	before := make([]*opsv1.Operation, len(tc.ops))
	for i, op := range tc.ops {
		before[i] = op.DeepCopy()
	}
	cached := trimmed(t, tc.ops)
	if diff := cmp.Diff(before, tc.ops); diff != "" {
		t.Fatalf("trimming a copy changed the original:\n%s", diff)
	}
	// The trim is real: finished operations lose their outcome and the rest;
	// those in flight stay whole but for managedFields.
	for i, op := range cached {
		orig := tc.ops[i]
		if op.ManagedFields != nil {
			t.Fatalf("%s: managedFields kept", op.Name)
		}
		if !lifecycle.IsFinal(orig.Status.Phase) {
			want := orig.DeepCopy()
			want.ManagedFields = nil
			if diff := cmp.Diff(want, op); diff != "" {
				t.Fatalf("%s in flight was trimmed:\n%s", op.Name, diff)
			}
			continue
		}
		if op.Status.Outcome != nil || op.Status.Conditions != nil || op.Status.Progress != nil ||
			op.Status.Rejection != nil || op.Spec.DisplayName != "" {
			t.Fatalf("%s finished but not trimmed: %+v", op.Name, op.Status)
		}
	}
	for _, sess := range tc.sessions {
		want := decide(sess, tc.ops, tc.gone[sess.Name])
		got := decide(sess, cached, tc.gone[sess.Name])
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("session %s decides differently on the trimmed cache (-whole +trimmed):\n%s", sess.Name, diff)
		}
	}
}

func newSession(name string, maxConcurrent *int32, policy opsv1.AdmissionPolicy, maxCompleted *int32) *opsv1.OpsSession {
	return &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Generation: 1, UID: types.UID("uid-" + name)},
		Spec:       opsv1.OpsSessionSpec{MaxConcurrent: maxConcurrent, AdmissionPolicy: policy, MaxCompleted: maxCompleted},
	}
}

// admitted puts ops into sess's ledger under their UIDs.
func admitted(sess *opsv1.OpsSession, ops ...*opsv1.Operation) *opsv1.OpsSession {
	for _, op := range ops {
		sess.Status.Admitted = append(sess.Status.Admitted, opsv1.LedgerEntry{Name: op.Name, UID: string(op.UID)})
	}
	return sess
}

func at(s float64) time.Time { return trimT0.Add(time.Duration(s * float64(time.Second))) }

func TestTrimmedCacheDecidesAsWholeObjects(t *testing.T) {
	declared := func(op *opsv1.Operation, k, v string, label bool) *opsv1.Operation {
		if label {
			op.Labels[k] = v
		} else {
			op.Annotations[k] = v
		}
		return op
	}
	staleConditions := func(op *opsv1.Operation) *opsv1.Operation { op.Status.Conditions = nil; return op }

	// Session a: Reject at 2, with finished operations still in its ledger.
	aDone := run(t, registered("a-done", "a", at(0.1)), admit, started, completed)
	aFailed := run(t, registered("a-failed", "a", at(0.2)), admit, failed)
	aRunning := run(t, registered("a-running", "a", at(0.3)), admit, started, progress)
	aNew1 := registered("a-new1", "a", at(5.1))
	aNew2 := registered("a-new2", "a", at(5.2))
	aRejected := run(t, registered("a-rejected", "a", at(1.5)), full)
	sa := admitted(newSession("a", ptr.To[int32](2), "", ptr.To[int32](1)), aDone, aFailed, aRunning)

	// Session b: Queue at 1, retention 2, declared operations kept.
	bOps := []*opsv1.Operation{
		run(t, registered("b-1", "b", at(1)), admit, started, completed),
		declared(run(t, registered("b-2", "b", at(2)), admit, started, completed), "argocd.argoproj.io/tracking-id", "app:ops.meerkat.dev/Operation:ns/b-2", false),
		declared(run(t, registered("b-3", "b", at(3)), admit, cancelled), "kustomize.toolkit.fluxcd.io/name", "ops", true),
		declared(run(t, registered("b-4", "b", at(4)), admit, started, retire, retired), opsv1.AnnotationDeclared, "true", false),
		declared(run(t, registered("b-5", "b", at(5)), admit, aborted), opsv1.AnnotationDeclared, "false", false),
		staleConditions(run(t, registered("b-6", "b", at(6)), admit, started, failed)),
		run(t, registered("b-7", "b", at(7)), admit, started),
		registered("b-8", "b", at(8)),
		registered("b-9", "b", at(8.5)),
	}
	sb := admitted(newSession("b", ptr.To[int32](1), opsv1.AdmissionQueue, ptr.To[int32](2)), bOps[6])

	// Session c: terminating, termination already done; default retention.
	cOps := []*opsv1.Operation{
		run(t, registered("c-1", "c", at(1)), admit, started, term),
		run(t, registered("c-2", "c", at(2)), term),
		run(t, registered("c-3", "c", at(3)), admit, started),
		registered("c-4", "c", at(4)),
	}
	sc := admitted(newSession("c", ptr.To[int32](3), "", nil), cOps[0], cOps[2])
	sc.Spec.Termination = &opsv1.Termination{Reason: disbanded}
	sc.Annotations = map[string]string{terminationDoneKey: "yes"}

	// Session d: no limit, maxCompleted 0: every finished operation goes, one already being deleted.
	dGoing := run(t, registered("d-going", "d", at(1)), admit, started, completed)
	dGoing.DeletionTimestamp = ptr.To(metav1.NewTime(at(100)))
	dGoing.Finalizers = []string{"example.com/hold"}
	dOps := []*opsv1.Operation{dGoing, run(t, registered("d-done", "d", at(2)), admit, started, completed), registered("d-new", "d", at(3))}
	sd := newSession("d", nil, "", ptr.To[int32](0))

	// Session e: rejections registered within one second, named against their
	// registration order, retention 1: the oldest goes by registration time.
	eOps := []*opsv1.Operation{
		run(t, registered("e-a", "e", at(10.9)), full),
		run(t, registered("e-b", "e", at(10.5)), full),
		run(t, registered("e-c", "e", at(10.1)), full),
	}
	se := newSession("e", ptr.To[int32](0), "", ptr.To[int32](1))

	cases := []trimCase{
		{name: "reject at the limit, finished operations in the ledger",
			sessions: []*opsv1.OpsSession{sa}, ops: []*opsv1.Operation{aDone, aFailed, aRunning, aNew1, aNew2, aRejected}},
		{name: "a ledger entry confirmed gone",
			sessions: []*opsv1.OpsSession{sa}, ops: []*opsv1.Operation{aDone, aRunning, aNew1, aNew2},
			gone: map[string]map[string]bool{"a": {"a-failed": true}}},
		{name: "queue, retention with declared operations", sessions: []*opsv1.OpsSession{sb}, ops: bOps},
		{name: "terminating session", sessions: []*opsv1.OpsSession{sc}, ops: cOps},
		{name: "unlimited, retain none", sessions: []*opsv1.OpsSession{sd}, ops: dOps},
		{name: "rejections within one second", sessions: []*opsv1.OpsSession{se}, ops: eOps},
		{name: "all sessions over one cache", sessions: []*opsv1.OpsSession{sa, sb, sc, sd, se},
			ops: append(append(append(append([]*opsv1.Operation{aDone, aFailed, aRunning, aNew1, aNew2, aRejected}, bOps...), cOps...), dOps...), eOps...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkSameDecisions(t, tc) })
	}
}

// TestTrimmedCacheDecidesAsWholeObjectsRandom: random sessions and
// operations, many registered within the same second.
func TestTrimmedCacheDecidesAsWholeObjectsRandom(t *testing.T) {
	for seed := range uint64(300) {
		tc := randomCase(t, rand.New(rand.NewPCG(seed, 13)))
		tc.name = fmt.Sprintf("seed %d", seed)
		t.Run(tc.name, func(t *testing.T) { checkSameDecisions(t, tc) })
		if t.Failed() {
			return
		}
	}
}

func randomCase(t testing.TB, rng *rand.Rand) trimCase {
	pick := func(n int) int { return rng.IntN(n) }
	var tc trimCase
	tc.gone = map[string]map[string]bool{}
	for s := range 1 + pick(3) {
		name := fmt.Sprintf("s%d", s)
		var maxConc, maxDone *int32
		if pick(4) > 0 {
			maxConc = ptr.To(int32(pick(4)))
		}
		if pick(3) > 0 {
			maxDone = ptr.To(int32(pick(5)))
		}
		policy := []opsv1.AdmissionPolicy{"", opsv1.AdmissionReject, opsv1.AdmissionQueue}[pick(3)]
		sess := newSession(name, maxConc, policy, maxDone)
		switch pick(8) {
		case 0:
			sess.Spec.Termination = &opsv1.Termination{Reason: disbanded}
		case 1:
			sess.Spec.Termination = &opsv1.Termination{Reason: disbanded}
			sess.Annotations = map[string]string{terminationDoneKey: "yes"}
		case 2:
			sess.DeletionTimestamp = ptr.To(metav1.NewTime(at(1000)))
		}
		tc.sessions = append(tc.sessions, sess)
		tc.gone[name] = map[string]bool{}
	}
	marks := []struct {
		k, v  string
		label bool
	}{
		{"argocd.argoproj.io/tracking-id", "app:x", false},
		{"kustomize.toolkit.fluxcd.io/name", "ops", true},
		{"kustomize.toolkit.fluxcd.io/name", "ops", false},
		{opsv1.AnnotationDeclared, "true", false},
		{opsv1.AnnotationDeclared, "true", true},
		{opsv1.AnnotationDeclared, "false", false},
	}
	for i := range 4 + pick(20) {
		sess := tc.sessions[pick(len(tc.sessions))]
		// Registered within a few seconds, so many share a second.
		regAt := trimT0.Add(time.Duration(pick(4))*time.Second + time.Duration(pick(1_000_000))*time.Microsecond)
		op := registered(fmt.Sprintf("op-%02d", i), sess.Name, regAt)
		if pick(2) == 0 {
			op.Spec.Kind = opsv1.MobMemberChild
		}
		switch pick(6) {
		case 0:
			delete(op.Annotations, opsv1.AnnotationCreatedAt) // a client that does not write it
		case 1:
			op.Annotations[opsv1.AnnotationCreatedAt] = "not a time"
		}
		path := lifecycles[pick(len(lifecycles))]
		if op.Spec.Kind == opsv1.MobMemberChild && len(path) >= 2 && path[1].call == lifecycle.ProvisioningSucceeded {
			path = append(append([]step{}, path[:2]...), append([]step{{call: lifecycle.PeerReady, args: lifecycle.Args{
				Peer: &opsv1.PeerHandle{PeerName: "peer-" + op.Name}}}}, path[2:]...)...)
		}
		run(t, op, path...)
		if pick(4) == 0 {
			m := marks[pick(len(marks))]
			if m.label {
				op.Labels[m.k] = m.v
			} else {
				op.Annotations[m.k] = m.v
			}
		}
		if lifecycle.IsFinal(op.Status.Phase) {
			switch pick(8) {
			case 0:
				op.Status.Conditions = nil // written raw, conditions stale
			case 1:
				op.DeletionTimestamp = ptr.To(metav1.NewTime(at(1000)))
				op.Finalizers = []string{"example.com/hold"}
			case 2:
				// Written raw by another client: no completedAt, its own createdAt.
				op.Status.CompletedAt = nil
				op.Status.CreatedAt = ptr.To(metav1.NewMicroTime(regAt.Add(time.Duration(pick(3_000_000)) * time.Microsecond)))
			}
		}
		// The ledger: active operations mostly, finished ones sometimes
		// (not yet seen final), and now and then an entry under an old UID.
		if sess.Spec.MaxConcurrent != nil && op.Status.AdmittedAt != nil && pick(3) > 0 {
			uid := string(op.UID)
			if pick(6) == 0 {
				uid = "old-" + uid
			}
			sess.Status.Admitted = append(sess.Status.Admitted, opsv1.LedgerEntry{Name: op.Name, UID: uid})
		}
		tc.ops = append(tc.ops, op)
	}
	for _, sess := range tc.sessions {
		if pick(3) == 0 {
			sess.Status.Admitted = append(sess.Status.Admitted, opsv1.LedgerEntry{Name: "vanished", UID: "uid-vanished"})
		}
		for _, e := range sess.Status.Admitted {
			if pick(5) == 0 {
				tc.gone[sess.Name][e.Name] = true
			}
		}
	}
	rng.Shuffle(len(tc.ops), func(i, j int) { tc.ops[i], tc.ops[j] = tc.ops[j], tc.ops[i] })
	return tc
}
