package admission_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
)

func TestRejectsOverLimit(t *testing.T) {
	cases := map[string]struct {
		session *opsv1.OpsSession
		ops     []*opsv1.Operation
		want    bool
	}{
		"full, reject policy": {
			session: newSession(maxConcurrent(1), ledger("r")),
			ops:     []*opsv1.Operation{newOp("r", running), newOp("p", pending)},
			want:    true,
		},
		"free slot": {
			session: newSession(maxConcurrent(2), ledger("r")),
			ops:     []*opsv1.Operation{newOp("r", running), newOp("p", pending)},
		},
		"full, queue policy": {
			session: newSession(maxConcurrent(1), policy(opsv1.AdmissionQueue), ledger("r")),
			ops:     []*opsv1.Operation{newOp("r", running), newOp("p", pending)},
		},
		"owner terminated rejections need no live view": {
			session: newSession(maxConcurrent(1), termination("bye")),
			ops:     []*opsv1.Operation{newOp("p", pending)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			done := tc.session.Spec.Termination != nil
			p := admission.Decide(admission.Input{Session: tc.session, Ops: tc.ops, TerminationDone: done})
			if got := admission.RejectsOverLimit(p); got != tc.want {
				t.Errorf("RejectsOverLimit = %v, want %v (plan %+v)", got, tc.want, summarize(p))
			}
		})
	}
}

func TestActive(t *testing.T) {
	ops := []*opsv1.Operation{
		newOp("a", ""), newOp("b", pending), newOp("c", provisioning), newOp("d", running), newOp("e", retiring),
		newOp("f", completed), newOp("g", rejected), newOp("h", terminated),
	}
	if got := admission.Active(ops); got != 3 {
		t.Errorf("Active = %d, want 3", got)
	}
}

func TestFence(t *testing.T) {
	at := func(s int) opOption { return createdAt(time.Duration(s) * time.Second) }
	// Three pending operations against a full ledger of two.
	full := admission.Decide(admission.Input{
		Session: newSession(maxConcurrent(2), ledger("a", "b")),
		Ops: []*opsv1.Operation{
			newOp("a", running), newOp("b", provisioning), newOp("done", completed),
			newOp("p3", pending, at(3)), newOp("p1", pending, at(1)), newOp("p2", pending, at(2)),
		},
	})
	fullWant := summary{Ledger: entries("a", "b"), Limit: 2, Active: 2, Finished: 4,
		Reject: []rejection{overLimit("p1", 2, 2), overLimit("p2", 2, 2), overLimit("p3", 2, 2)}}
	// The incident: the ledger holds four finished operations and a fifth
	// just admitted; no operation is active any more.
	stale := admission.Decide(admission.Input{
		Session: newSession(maxConcurrent(5), ledger("a", "b", "c", "d")),
		Ops: []*opsv1.Operation{
			newOp("a", running), newOp("b", running), newOp("c", running), newOp("d", running),
			newOp("p1", pending, at(1)), newOp("p2", pending, at(2)),
		},
	})
	terminated := admission.Decide(admission.Input{
		Session: newSession(maxConcurrent(1), termination("bye")), TerminationDone: true,
		Ops: []*opsv1.Operation{newOp("p1", pending), newOp("p2", pending)},
	})
	zero := admission.Decide(admission.Input{
		Session: newSession(maxConcurrent(0)),
		Ops:     []*opsv1.Operation{newOp("p1", pending)},
	})

	cases := map[string]struct {
		plan         admission.Plan
		active, max  int
		want         summary
		wantWithheld int
	}{
		"confirmed full: every rejection stands": {
			plan: full, active: 2, want: fullWant,
		},
		"more active than the limit (it was lowered)": {
			plan: full, active: 7, want: fullWant,
		},
		"a slot is free: every rejection is withheld": {
			plan: full, active: 1,
			want:         summary{Ledger: entries("a", "b"), Limit: 2, Active: 2, Finished: 1},
			wantWithheld: 3,
		},
		"capped, oldest first": {
			plan: full, active: 2, max: 2,
			want: summary{Ledger: entries("a", "b"), Limit: 2, Active: 2, Finished: 3,
				Reject: []rejection{overLimit("p1", 2, 2), overLimit("p2", 2, 2)}},
			wantWithheld: 1,
		},
		"stale ledger, nothing active: admits the fifth, rejects nothing": {
			plan: stale, active: 0,
			want: summary{Ledger: entries("a", "b", "c", "d", "p1"), LedgerChanged: true,
				Admit: []string{"p1"}, Limit: 5, Active: 5},
			wantWithheld: 1,
		},
		"maxConcurrent 0 needs nothing active": {
			plan: zero, active: 0,
			want: summary{Limit: 0, Finished: 1, Reject: []rejection{overLimit("p1", 0, 0)}},
		},
		"owner-terminated rejections are never withheld nor capped": {
			plan: terminated, active: 0, max: 1,
			want: summary{Limit: 1, Finished: 2, Reject: []rejection{ownerTerminated("p1"), ownerTerminated("p2")}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := summarize(tc.plan)
			p, withheld := admission.Fence(tc.plan, tc.active, tc.max)
			if diff := cmp.Diff(tc.want, summarize(p), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if withheld != tc.wantWithheld {
				t.Errorf("withheld = %d, want %d", withheld, tc.wantWithheld)
			}
			if diff := cmp.Diff(before, summarize(tc.plan)); diff != "" {
				t.Errorf("Fence changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

// TestFenceProperties: over random plans and live counts, a
// MaxConcurrentExceeded rejection is kept only when the count reaches the
// limit, the cap holds, kept rejections are the oldest in the plan's order,
// and nothing but rejections changes.
func TestFenceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	phases := []opsv1.OperationPhase{"", pending, pending, pending, provisioning, running, retiring, completed}
	for i := 0; i < 5000 && !t.Failed(); i++ {
		limit := rng.IntN(5)
		sopts := []sessOption{maxConcurrent(int32(limit))}
		if rng.IntN(8) == 0 {
			sopts = append(sopts, termination("x"))
		}
		var ops []*opsv1.Operation
		for j := 0; j < rng.IntN(10); j++ {
			name := fmt.Sprintf("op-%d", j)
			if rng.IntN(4) == 0 {
				sopts = append(sopts, ledger(name))
			}
			ops = append(ops, newOp(name, phases[rng.IntN(len(phases))], createdAt(time.Duration(rng.IntN(4))*time.Second)))
		}
		in := admission.Input{Session: newSession(sopts...), Ops: ops, TerminationDone: rng.IntN(2) == 0}
		plan := admission.Decide(in)
		active, maxRej := rng.IntN(7), rng.IntN(4)
		p, withheld := admission.Fence(plan, active, maxRej)
		label := fmt.Sprintf("case %d: limit %d, active %d, max %d, ops %v: %+v -> %+v", i, limit, active, maxRej, describe(ops), summarize(plan), summarize(p))
		over := 0
		for j, r := range p.Reject {
			if r.Rejection.Reason != opsv1.RejectionMaxConcurrentExceeded {
				continue
			}
			over++
			if active < limit {
				t.Fatalf("%s\nrejected with %d active < limit %d", label, active, limit)
			}
			if r != plan.Reject[j] {
				t.Fatalf("%s\nkept rejection %d is not the plan's %d-th", label, j, j)
			}
		}
		if maxRej > 0 && over > maxRej {
			t.Fatalf("%s\n%d rejections over the cap %d", label, over, maxRej)
		}
		if len(p.Reject)+withheld != len(plan.Reject) || p.Finished != plan.Finished-withheld {
			t.Fatalf("%s\nrejections or counts do not add up (withheld %d)", label, withheld)
		}
		if !admission.RejectsOverLimit(plan) && withheld > 0 {
			t.Fatalf("%s\nwithheld with no over-limit rejection", label)
		}
		a, b := summarize(plan), summarize(p)
		a.Reject, b.Reject, a.Finished, b.Finished = nil, nil, 0, 0
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("%s\nFence changed more than the rejections:\n%s", label, diff)
		}
	}
}
