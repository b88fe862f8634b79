package admission_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

const (
	pending      = opsv1.PhasePending
	provisioning = opsv1.PhaseProvisioning
	running      = opsv1.PhaseRunning
	retiring     = opsv1.PhaseRetiring
	completed    = opsv1.PhaseCompleted
	failed       = opsv1.PhaseFailed
	aborted      = opsv1.PhaseAborted
	cancelled    = opsv1.PhaseCancelled
	retired      = opsv1.PhaseRetired
	terminated   = opsv1.PhaseTerminated
	rejected     = opsv1.PhaseRejected
)

// base is every operation's metadata.creationTimestamp unless set otherwise.
var base = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// --- operation builder ---

type opOption func(*opsv1.Operation)

// createdAt writes the client's created-at annotation, base + d.
// createdAt registers op at base+d, as a client and the API server would:
// the annotation at microseconds, creationTimestamp at its second.
func createdAt(d time.Duration) opOption {
	return func(op *opsv1.Operation) {
		op.Annotations[opsv1.AnnotationCreatedAt] = base.Add(d).Format(time.RFC3339Nano)
		op.CreationTimestamp = metav1.NewTime(base.Add(d).Truncate(time.Second))
	}
}

func withUID(uid string) opOption {
	return func(op *opsv1.Operation) { op.UID = types.UID(uid) }
}

func newOp(name string, phase opsv1.OperationPhase, opts ...opOption) *opsv1.Operation {
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(base),
			Annotations:       map[string]string{},
		},
		Spec:   opsv1.OperationSpec{SessionName: "sess", Kind: opsv1.BackgroundToolOp},
		Status: opsv1.OperationStatus{Phase: phase},
	}
	for _, o := range opts {
		o(op)
	}
	return op
}

// --- session builder ---

type sessOption func(*opsv1.OpsSession)

func maxConcurrent(n int32) sessOption {
	return func(s *opsv1.OpsSession) { s.Spec.MaxConcurrent = &n }
}

func policy(p opsv1.AdmissionPolicy) sessOption {
	return func(s *opsv1.OpsSession) { s.Spec.AdmissionPolicy = p }
}

// ledger stores entries for names, each with the UID newOp gives that name.
func ledger(names ...string) sessOption {
	return func(s *opsv1.OpsSession) {
		for _, n := range names {
			s.Status.Admitted = append(s.Status.Admitted, opsv1.LedgerEntry{Name: n, UID: "uid-" + n})
		}
	}
}

func ledgerEntry(name, uid string) sessOption {
	return func(s *opsv1.OpsSession) {
		s.Status.Admitted = append(s.Status.Admitted, opsv1.LedgerEntry{Name: name, UID: uid})
	}
}

func termination(reason string) sessOption {
	return func(s *opsv1.OpsSession) { s.Spec.Termination = &opsv1.Termination{Reason: reason} }
}

func deleting() sessOption {
	return func(s *opsv1.OpsSession) {
		ts := metav1.NewTime(base.Add(time.Hour))
		s.DeletionTimestamp = &ts
		s.Finalizers = []string{opsv1.FinalizerTerminate}
	}
}

func newSession(opts ...sessOption) *opsv1.OpsSession {
	s := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "sess", Namespace: "ns", UID: "uid-sess"}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// entries builds the expected ledger for names, with newOp's UIDs.
func entries(names ...string) []opsv1.LedgerEntry {
	out := make([]opsv1.LedgerEntry, 0, len(names))
	for _, n := range names {
		out = append(out, opsv1.LedgerEntry{Name: n, UID: "uid-" + n})
	}
	return out
}

// --- plan summary, compared with cmp.Diff ---

type rejection struct {
	Name          string
	Reason        opsv1.RejectionReason
	Limit, Active *int32
}

type summary struct {
	Ledger                  []opsv1.LedgerEntry
	LedgerChanged           bool
	Admit, Queue, Terminate []string
	Reject                  []rejection
	Limit, Active           int
	Queued, Finished        int
}

func names(ops []*opsv1.Operation) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Name)
	}
	return out
}

func summarize(p admission.Plan) summary {
	s := summary{
		Ledger: p.Ledger, LedgerChanged: p.LedgerChanged,
		Admit: names(p.Admit), Queue: names(p.Queue), Terminate: names(p.Terminate),
		Limit: p.Limit, Active: p.Active, Queued: p.Queued, Finished: p.Finished,
	}
	for _, r := range p.Reject {
		s.Reject = append(s.Reject, rejection{r.Op.Name, r.Rejection.Reason, r.Rejection.Limit, r.Rejection.Active})
	}
	return s
}

func i32(n int32) *int32 { return &n }

func overLimit(name string, limit, active int32) rejection {
	return rejection{name, opsv1.RejectionMaxConcurrentExceeded, i32(limit), i32(active)}
}

func ownerTerminated(name string) rejection {
	return rejection{Name: name, Reason: opsv1.RejectionOwnerTerminated}
}

func TestDecide(t *testing.T) {
	cases := map[string]struct {
		session         *opsv1.OpsSession
		ops             []*opsv1.Operation
		gone            map[string]bool
		terminationDone bool
		want            summary
		// wantNilLedger says the plan keeps no ledger at all.
		wantNilLedger bool
	}{
		"unlimited admits every pending operation and keeps no ledger": {
			session: newSession(policy(opsv1.AdmissionQueue)),
			ops: []*opsv1.Operation{
				newOp("b", pending), newOp("a", pending), newOp("r", running), newOp("c", ""),
			},
			want:          summary{Admit: []string{"a", "b", "c"}, Limit: -1, Active: 4},
			wantNilLedger: true,
		},
		"unlimited drops a ledger stored while limited": {
			session:       newSession(ledger("r", "gone")),
			ops:           []*opsv1.Operation{newOp("r", running), newOp("done", completed)},
			want:          summary{LedgerChanged: true, Limit: -1, Active: 2, Finished: 1},
			wantNilLedger: true,
		},
		"reject policy rejects over the limit with limit and active": {
			session: newSession(maxConcurrent(2), policy(opsv1.AdmissionReject), ledger("r")),
			ops: []*opsv1.Operation{
				newOp("r", running),
				newOp("p3", pending, createdAt(3*time.Second)),
				newOp("p1", pending, createdAt(1*time.Second)),
				newOp("p2", pending, createdAt(2*time.Second)),
			},
			want: summary{
				Ledger: entries("p1", "r"), LedgerChanged: true,
				Admit:  []string{"p1"},
				Reject: []rejection{overLimit("p2", 2, 2), overLimit("p3", 2, 2)},
				Limit:  2, Active: 2, Finished: 2,
			},
		},
		"the default policy is reject": {
			session: newSession(maxConcurrent(1)),
			ops:     []*opsv1.Operation{newOp("p2", pending, createdAt(2*time.Second)), newOp("p1", pending, createdAt(time.Second))},
			want: summary{
				Ledger: entries("p1"), LedgerChanged: true,
				Admit: []string{"p1"}, Reject: []rejection{overLimit("p2", 1, 1)},
				Limit: 1, Active: 1, Finished: 1,
			},
		},
		"active equal to the limit rejects": {
			session: newSession(maxConcurrent(1), ledger("r")),
			ops:     []*opsv1.Operation{newOp("r", running), newOp("p", pending)},
			want: summary{
				Ledger: entries("r"), Reject: []rejection{overLimit("p", 1, 1)},
				Limit: 1, Active: 1, Finished: 1,
			},
		},
		"maxConcurrent 0 rejects everything with limit 0 and active 0": {
			session: newSession(maxConcurrent(0)),
			ops:     []*opsv1.Operation{newOp("p1", pending), newOp("p2", ""), newOp("old", cancelled)},
			want: summary{
				Reject: []rejection{overLimit("p1", 0, 0), overLimit("p2", 0, 0)},
				Limit:  0, Finished: 3,
			},
		},
		"maxConcurrent 0 with the queue policy queues everything": {
			session: newSession(maxConcurrent(0), policy(opsv1.AdmissionQueue)),
			ops:     []*opsv1.Operation{newOp("p2", pending, createdAt(2*time.Second)), newOp("p1", pending, createdAt(time.Second))},
			want:    summary{Queue: []string{"p1", "p2"}, Limit: 0, Queued: 2},
		},
		"queue policy queues in FIFO order: created-at, then name": {
			session: newSession(maxConcurrent(1), policy(opsv1.AdmissionQueue)),
			ops: []*opsv1.Operation{
				newOp("late", pending, createdAt(3*time.Second)),
				newOp("b", pending, createdAt(time.Second)),
				newOp("c", pending, createdAt(2*time.Second+2*time.Microsecond)),
				newOp("a", pending, createdAt(time.Second)),
				newOp("d", pending, createdAt(2*time.Second+1*time.Microsecond)),
				newOp("early", pending, createdAt(500*time.Millisecond)),
				// No annotation: metadata.creationTimestamp, base, comes first.
				newOp("z-no-annotation", pending),
			},
			want: summary{
				Ledger: entries("z-no-annotation"), LedgerChanged: true,
				Admit: []string{"z-no-annotation"},
				Queue: []string{"early", "a", "b", "d", "c", "late"},
				Limit: 1, Active: 1, Queued: 6,
			},
		},
		"queue policy admits into free slots in FIFO order": {
			session: newSession(maxConcurrent(3), policy(opsv1.AdmissionQueue)),
			ops: []*opsv1.Operation{
				newOp("r", running),
				newOp("p3", pending, createdAt(3*time.Second)),
				newOp("p1", pending, createdAt(1*time.Second)),
				newOp("p2", pending, createdAt(2*time.Second)),
			},
			want: summary{
				Ledger: entries("p1", "p2", "r"), LedgerChanged: true,
				Admit: []string{"p1", "p2"}, Queue: []string{"p3"},
				Limit: 3, Active: 3, Queued: 1,
			},
		},
		"a ledger entry with no operation in the list is kept and counts as active": {
			session: newSession(maxConcurrent(2), ledger("ghost")),
			ops:     []*opsv1.Operation{newOp("p1", pending, createdAt(time.Second)), newOp("p2", pending, createdAt(2*time.Second))},
			want: summary{
				Ledger: entries("ghost", "p1"), LedgerChanged: true,
				Admit: []string{"p1"}, Reject: []rejection{overLimit("p2", 2, 2)},
				Limit: 2, Active: 2, Finished: 1,
			},
		},
		"a ledger entry confirmed gone is dropped": {
			session: newSession(maxConcurrent(2), ledger("ghost")),
			ops:     []*opsv1.Operation{newOp("p1", pending, createdAt(time.Second)), newOp("p2", pending, createdAt(2*time.Second))},
			gone:    map[string]bool{"ghost": true},
			want: summary{
				Ledger: entries("p1", "p2"), LedgerChanged: true,
				Admit: []string{"p1", "p2"}, Limit: 2, Active: 2,
			},
		},
		"gone only drops entries it names": {
			session: newSession(maxConcurrent(2), ledger("ghost", "other")),
			ops:     []*opsv1.Operation{newOp("p1", pending)},
			gone:    map[string]bool{"ghost": true, "p1": true},
			want: summary{
				Ledger: entries("other", "p1"), LedgerChanged: true,
				Admit: []string{"p1"}, Limit: 2, Active: 2,
			},
		},
		// Gone lists a name re-created with another UID once a live read has
		// confirmed it (Input's contract); see also
		// TestDecideStaleCacheKeepsLedgerEntryOfReRegisteredName.
		"a ledger entry with another UID is dropped and the new operation admitted": {
			session: newSession(maxConcurrent(1), ledgerEntry("a", "uid-old")),
			ops:     []*opsv1.Operation{newOp("a", pending)},
			gone:    map[string]bool{"a": true},
			want: summary{
				Ledger: entries("a"), LedgerChanged: true,
				Admit: []string{"a"}, Limit: 1, Active: 1,
			},
		},
		"a ledger entry with another UID is replaced for an active operation": {
			session: newSession(maxConcurrent(2), ledgerEntry("a", "uid-old")),
			ops:     []*opsv1.Operation{newOp("a", running), newOp("p", pending)},
			gone:    map[string]bool{"a": true},
			want: summary{
				Ledger: entries("a", "p"), LedgerChanged: true,
				Admit: []string{"p"}, Limit: 2, Active: 2,
			},
		},
		"finished operations leave the ledger": {
			session: newSession(maxConcurrent(2), ledger("c", "f", "rj", "r")),
			ops: []*opsv1.Operation{
				newOp("c", completed), newOp("f", failed), newOp("rj", rejected), newOp("r", running),
				newOp("p1", pending, createdAt(time.Second)), newOp("p2", pending, createdAt(2*time.Second)),
			},
			want: summary{
				Ledger: entries("p1", "r"), LedgerChanged: true,
				Admit: []string{"p1"}, Reject: []rejection{overLimit("p2", 2, 2)},
				Limit: 2, Active: 2, Finished: 4,
			},
		},
		"every terminal phase leaves the ledger": {
			session: newSession(maxConcurrent(1), ledger("a", "b", "c", "d", "e", "f", "g")),
			ops: []*opsv1.Operation{
				newOp("a", completed), newOp("b", failed), newOp("c", aborted), newOp("d", cancelled),
				newOp("e", retired), newOp("f", terminated), newOp("g", rejected), newOp("p", pending),
			},
			want: summary{
				Ledger: entries("p"), LedgerChanged: true,
				Admit: []string{"p"}, Limit: 1, Active: 1, Finished: 7,
			},
		},
		"a pending operation already in the ledger is admitted again without counting twice": {
			session: newSession(maxConcurrent(2), ledger("p1")),
			ops: []*opsv1.Operation{
				newOp("p3", pending, createdAt(3*time.Second)),
				newOp("p1", pending, createdAt(1*time.Second)),
				newOp("p2", pending, createdAt(2*time.Second)),
			},
			want: summary{
				Ledger: entries("p1", "p2"), LedgerChanged: true,
				Admit: []string{"p1", "p2"}, Reject: []rejection{overLimit("p3", 2, 2)},
				Limit: 2, Active: 2, Finished: 1,
			},
		},
		"a pending operation in the ledger is admitted again when nothing else changes": {
			session: newSession(maxConcurrent(1), ledger("p1")),
			ops:     []*opsv1.Operation{newOp("p1", pending)},
			want:    summary{Ledger: entries("p1"), Admit: []string{"p1"}, Limit: 1, Active: 1},
		},
		"active operations absent from the ledger are added when limited": {
			session: newSession(maxConcurrent(5)),
			ops:     []*opsv1.Operation{newOp("r3", retiring), newOp("r1", running), newOp("r2", provisioning), newOp("c", completed)},
			want: summary{
				Ledger: entries("r1", "r2", "r3"), LedgerChanged: true,
				Limit: 5, Active: 3, Finished: 1,
			},
		},
		"an unchanged ledger is not rewritten": {
			session: newSession(maxConcurrent(3), ledger("r1", "r2")),
			ops:     []*opsv1.Operation{newOp("r2", running), newOp("r1", provisioning)},
			want:    summary{Ledger: entries("r1", "r2"), Limit: 3, Active: 2},
		},
		"lowering the limit queues while active >= limit": {
			session: newSession(maxConcurrent(1), policy(opsv1.AdmissionQueue), ledger("r1", "r2")),
			ops:     []*opsv1.Operation{newOp("r1", running), newOp("r2", retiring), newOp("p", pending)},
			want: summary{
				Ledger: entries("r1", "r2"), Queue: []string{"p"},
				Limit: 1, Active: 2, Queued: 1,
			},
		},
		"lowering the limit rejects while active >= limit": {
			session: newSession(maxConcurrent(1), ledger("r1", "r2")),
			ops:     []*opsv1.Operation{newOp("r1", running), newOp("r2", retiring), newOp("p", pending)},
			want: summary{
				Ledger: entries("r1", "r2"), Reject: []rejection{overLimit("p", 1, 2)},
				Limit: 1, Active: 2, Finished: 1,
			},
		},
		"lowering the limit to 0 admits nothing new": {
			session: newSession(maxConcurrent(0), policy(opsv1.AdmissionQueue)),
			ops:     []*opsv1.Operation{newOp("r1", running), newOp("p", pending)},
			want: summary{
				Ledger: entries("r1"), LedgerChanged: true, Queue: []string{"p"},
				Limit: 0, Active: 1, Queued: 1,
			},
		},
		"termination terminates every non-final operation, pending included": {
			session: newSession(maxConcurrent(2), ledger("pv", "r"), termination("shutdown")),
			ops: []*opsv1.Operation{
				newOp("p", pending), newOp("pv", provisioning), newOp("r", running), newOp("rt", retiring),
				newOp("c", completed), newOp("rj", rejected), newOp("u", ""),
			},
			want: summary{
				Ledger: entries("pv", "r", "rt"), LedgerChanged: true,
				Terminate: []string{"p", "pv", "r", "rt", "u"},
				Limit:     2, Finished: 7,
			},
		},
		"termination terminates a pending operation admitted in the ledger": {
			session: newSession(maxConcurrent(1), ledger("p"), termination("shutdown")),
			ops:     []*opsv1.Operation{newOp("p", pending)},
			want:    summary{Ledger: entries("p"), Terminate: []string{"p"}, Limit: 1, Finished: 1},
		},
		"after termination new pending operations are rejected as OwnerTerminated": {
			session:         newSession(termination("shutdown")),
			ops:             []*opsv1.Operation{newOp("new", pending), newOp("r", running), newOp("t", terminated)},
			terminationDone: true,
			want: summary{
				Reject: []rejection{ownerTerminated("new")}, Terminate: []string{"r"},
				Limit: -1, Finished: 3,
			},
			wantNilLedger: true,
		},
		"after termination a pending operation in the ledger is still terminated": {
			session:         newSession(maxConcurrent(3), ledger("adm"), termination("shutdown")),
			ops:             []*opsv1.Operation{newOp("adm", pending), newOp("new", "")},
			terminationDone: true,
			want: summary{
				Ledger: entries("adm"), Terminate: []string{"adm"}, Reject: []rejection{ownerTerminated("new")},
				Limit: 3, Finished: 2,
			},
		},
		"a session being deleted terminates like termination": {
			session: newSession(maxConcurrent(1), deleting()),
			ops:     []*opsv1.Operation{newOp("p", pending), newOp("r", running)},
			want: summary{
				Ledger: entries("r"), LedgerChanged: true, Terminate: []string{"p", "r"},
				Limit: 1, Finished: 2,
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sessBefore := tc.session.DeepCopy()
			opsBefore := deepCopyOps(tc.ops)
			p := admission.Decide(admission.Input{
				Session: tc.session, Ops: tc.ops, Gone: tc.gone, TerminationDone: tc.terminationDone,
			})
			if diff := cmp.Diff(tc.want, summarize(p), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan mismatch (-want +got):\n%s", diff)
			}
			if tc.wantNilLedger && p.Ledger != nil {
				t.Errorf("ledger = %v, want none", p.Ledger)
			}
			if diff := cmp.Diff(sessBefore, tc.session); diff != "" {
				t.Errorf("Decide changed the session (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(opsBefore, tc.ops); diff != "" {
				t.Errorf("Decide changed the operations or their order (-before +after):\n%s", diff)
			}
		})
	}
}

// TestDecideStaleCacheKeepsLedgerEntryOfReRegisteredName: operation "a" was
// evicted and registered again, and the new "a" was admitted into the ledger.
// This controller's cache still holds the old, Completed "a". Only a live read
// may free an admitted slot (Input.Gone), so the entry must stand and the last
// slot stays taken; dropping it on the UID mismatch admits a second operation
// past maxConcurrent.
func TestDecideStaleCacheKeepsLedgerEntryOfReRegisteredName(t *testing.T) {
	for _, oldPhase := range []opsv1.OperationPhase{completed, rejected} {
		t.Run(string(oldPhase), func(t *testing.T) {
			in := admission.Input{
				Session: newSession(maxConcurrent(1), ledgerEntry("a", "uid-a-new")),
				Ops: []*opsv1.Operation{
					newOp("a", oldPhase, withUID("uid-a-old")), // stale: the cache has not seen the re-registration
					newOp("p", pending),
				},
			}
			got := summarize(admission.Decide(in))
			want := summary{
				Ledger: []opsv1.LedgerEntry{{Name: "a", UID: "uid-a-new"}},
				Reject: []rejection{overLimit("p", 1, 1)},
				Limit:  1, Active: 1, Finished: 2,
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideRejectionsDoNotShareCounters(t *testing.T) {
	p := admission.Decide(admission.Input{
		Session: newSession(maxConcurrent(0)),
		Ops:     []*opsv1.Operation{newOp("a", pending), newOp("b", pending)},
	})
	if len(p.Reject) != 2 {
		t.Fatalf("got %d rejections, want 2", len(p.Reject))
	}
	if p.Reject[0].Rejection.Limit == p.Reject[1].Rejection.Limit || p.Reject[0].Rejection.Active == p.Reject[1].Rejection.Active {
		t.Errorf("rejections share limit or active pointers; writing one would change the other")
	}
}

func TestSortFIFO(t *testing.T) {
	ops := []*opsv1.Operation{
		newOp("b", pending, createdAt(time.Second)),
		newOp("a", pending, createdAt(time.Second)),
		// Neither a status write nor a forged annotation moves an operation
		// ahead of those the API server stored before it.
		newOp("status-ignored", pending, createdAt(time.Hour), func(op *opsv1.Operation) {
			m := metav1.NewMicroTime(base.Add(-time.Hour))
			op.Status.CreatedAt = &m
		}),
		newOp("forged-annotation", pending, createdAt(3*time.Second), func(op *opsv1.Operation) {
			op.Annotations[opsv1.AnnotationCreatedAt] = base.Add(-time.Hour).Format(time.RFC3339Nano)
		}),
		newOp("bad-annotation", pending, func(op *opsv1.Operation) {
			op.Annotations[opsv1.AnnotationCreatedAt] = "soon"
			op.CreationTimestamp = metav1.NewTime(base.Add(2 * time.Second))
		}),
		newOp("micro", pending, createdAt(time.Second-time.Microsecond)),
	}
	admission.SortFIFO(ops)
	want := []string{"micro", "a", "b", "bad-annotation", "forged-annotation", "status-ignored"}
	if diff := cmp.Diff(want, names(ops)); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func deepCopyOps(ops []*opsv1.Operation) []*opsv1.Operation {
	out := make([]*opsv1.Operation, len(ops))
	for i, op := range ops {
		out[i] = op.DeepCopy()
	}
	return out
}

// TestDecideProperties checks, over random sessions, what must hold of any
// plan: it never admits past the limit, places every Pending operation
// exactly once, and returns a well-formed ledger.
func TestDecideProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	phases := []opsv1.OperationPhase{"", pending, pending, pending, provisioning, running, retiring, completed, failed, rejected, terminated}
	for i := 0; i < 5000 && !t.Failed(); i++ {
		var sopts []sessOption
		limit := -1
		if rng.IntN(4) != 0 {
			limit = rng.IntN(5)
			sopts = append(sopts, maxConcurrent(int32(limit)))
		}
		if rng.IntN(2) == 0 {
			sopts = append(sopts, policy(opsv1.AdmissionQueue))
		}
		terminating := rng.IntN(8) == 0
		if terminating {
			sopts = append(sopts, termination("x"))
		}
		var ops []*opsv1.Operation
		gone := map[string]bool{}
		for j := 0; j < rng.IntN(9); j++ {
			name := fmt.Sprintf("op-%d", j)
			phase := phases[rng.IntN(len(phases))]
			switch rng.IntN(6) {
			case 0: // admitted, but the cache has not seen it yet, or it is gone
				sopts = append(sopts, ledger(name))
				if rng.IntN(2) == 0 {
					gone[name] = true
				}
				continue
			case 1: // admitted under this name
				sopts = append(sopts, ledger(name))
			case 2: // a previous operation of the same name was admitted; a live read confirmed it
				sopts = append(sopts, ledgerEntry(name, "uid-old"))
				gone[name] = true
			}
			ops = append(ops, newOp(name, phase, createdAt(time.Duration(rng.IntN(4))*time.Second)))
		}
		rng.Shuffle(len(ops), func(a, b int) { ops[a], ops[b] = ops[b], ops[a] })
		sess := newSession(sopts...)
		in := admission.Input{Session: sess, Ops: ops, Gone: gone, TerminationDone: terminating && rng.IntN(2) == 0}
		label := fmt.Sprintf("case %d: limit %d, policy %q, terminating %v, done %v, ledger %v, gone %v, ops %v",
			i, limit, sess.Spec.AdmissionPolicy, terminating, in.TerminationDone, sess.Status.Admitted, gone, describe(ops))
		p := admission.Decide(in)
		if msg := checkPlan(in, p, limit, terminating); msg != "" {
			t.Fatalf("%s\n%s\nplan: %+v", label, msg, summarize(p))
		}
	}
}

func describe(ops []*opsv1.Operation) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Name+"="+string(lifecycle.Normalize(op.Status.Phase)))
	}
	return out
}

// checkPlan returns what is wrong with plan p for input in, or "".
func checkPlan(in admission.Input, p admission.Plan, limit int, terminating bool) string {
	if msg := checkPlacement(in, p, terminating); msg != "" {
		return msg
	}
	if msg := checkRejections(in, p, terminating); msg != "" {
		return msg
	}
	if limit < 0 {
		if p.Ledger != nil || len(p.Queue) > 0 || (!terminating && len(p.Reject) > 0) {
			return "an unlimited session keeps a ledger, queues or rejects"
		}
		return ""
	}
	held, storedAdmitted := heldSlots(in)
	if msg := checkSlots(p, limit, terminating, held, storedAdmitted); msg != "" {
		return msg
	}
	return checkLedger(in, p, held)
}

// heldSlots returns the slots held before the plan, counted independently
// of Decide: every active operation, and every stored entry still standing
// for a non-final operation or one the view has not shown yet; and, of
// those, the ones held by a stored entry for a visible operation.
func heldSlots(in admission.Input) (held, storedAdmitted map[string]bool) {
	byName := map[string]*opsv1.Operation{}
	for _, op := range in.Ops {
		byName[op.Name] = op
	}
	held = map[string]bool{}
	storedAdmitted = map[string]bool{}
	for _, op := range in.Ops {
		if lifecycle.IsActive(op.Status.Phase) {
			held[op.Name] = true
		}
	}
	for _, e := range in.Session.Status.Admitted {
		op := byName[e.Name]
		switch {
		case op == nil && !in.Gone[e.Name]:
			held[e.Name] = true
		case op != nil && string(op.UID) == e.UID && !lifecycle.IsFinal(op.Status.Phase):
			held[e.Name] = true
			storedAdmitted[e.Name] = true
		}
	}
	return held, storedAdmitted
}

// checkPlacement: every pending operation, and every non-final one of a
// terminating session, is placed exactly once; no other is placed.
func checkPlacement(in admission.Input, p admission.Plan, terminating bool) string {
	placed := map[string]int{}
	for _, op := range p.Admit {
		placed[op.Name]++
	}
	for _, op := range p.Queue {
		placed[op.Name]++
	}
	for _, r := range p.Reject {
		placed[r.Op.Name]++
	}
	for _, op := range p.Terminate {
		placed[op.Name]++
	}
	for _, op := range in.Ops {
		phase := lifecycle.Normalize(op.Status.Phase)
		want := 0
		if phase == pending || (terminating && !lifecycle.IsFinal(phase)) {
			want = 1
		}
		if placed[op.Name] != want {
			return fmt.Sprintf("%s (%s) placed %d times, want %d", op.Name, phase, placed[op.Name], want)
		}
	}
	return ""
}

// checkRejections: a terminating session neither admits nor queues, and
// rejects with OwnerTerminated only, once the termination is done.
func checkRejections(in admission.Input, p admission.Plan, terminating bool) string {
	if terminating && (len(p.Admit) > 0 || len(p.Queue) > 0) {
		return "a terminating session admits or queues"
	}
	for _, r := range p.Reject {
		if terminating != (r.Rejection.Reason == opsv1.RejectionOwnerTerminated) {
			return fmt.Sprintf("rejection reason %s, terminating %v", r.Rejection.Reason, terminating)
		}
		if terminating && !in.TerminationDone {
			return "rejected before the termination was done"
		}
	}
	return ""
}

// checkSlots: a limited session admits no more than its free slots, counts
// its active operations right, and queues or rejects only when full.
func checkSlots(p admission.Plan, limit int, terminating bool, held, storedAdmitted map[string]bool) string {
	newAdmits := 0
	for _, op := range p.Admit {
		if !storedAdmitted[op.Name] {
			newAdmits++
		}
	}
	if free := max(0, limit-len(held)); newAdmits > free {
		return fmt.Sprintf("admitted %d new operations with %d held slots and limit %d", newAdmits, len(held), limit)
	}
	if !terminating && p.Active != len(held)+newAdmits {
		return fmt.Sprintf("active = %d, want %d held + %d admitted", p.Active, len(held), newAdmits)
	}
	if !terminating && len(p.Queue)+len(p.Reject) > 0 && p.Active < limit {
		return "queued or rejected with a free slot"
	}
	return ""
}

// checkLedger: the ledger is sorted, holds every admitted operation with
// its UID and every held slot, and LedgerChanged tells whether it differs
// from the stored one.
func checkLedger(in admission.Input, p admission.Plan, held map[string]bool) string {
	inLedger := map[string]string{}
	for i, e := range p.Ledger {
		if i > 0 && p.Ledger[i-1].Name >= e.Name {
			return "ledger not sorted by name, or has a duplicate"
		}
		inLedger[e.Name] = e.UID
	}
	for _, op := range p.Admit {
		if inLedger[op.Name] != string(op.UID) {
			return fmt.Sprintf("admitted %s is not in the ledger with its UID", op.Name)
		}
	}
	for name := range held {
		if _, ok := inLedger[name]; !ok {
			return fmt.Sprintf("held slot %s is missing from the ledger", name)
		}
	}
	if changed := !slices.Equal(p.Ledger, in.Session.Status.Admitted) && len(p.Ledger)+len(in.Session.Status.Admitted) > 0; changed != p.LedgerChanged {
		return fmt.Sprintf("LedgerChanged = %v, want %v", p.LedgerChanged, changed)
	}
	return ""
}
