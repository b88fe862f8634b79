package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
)

var statusT0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const interval = 10 * time.Second

func testSession(name string) *opsv1.OpsSession {
	return &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 2},
		Spec:       opsv1.OpsSessionSpec{MaxConcurrent: ptr.To[int32](3)},
	}
}

func ledger(names ...string) []opsv1.LedgerEntry {
	l := make([]opsv1.LedgerEntry, 0, len(names))
	for _, n := range names {
		l = append(l, opsv1.LedgerEntry{Name: n, UID: "uid-" + n})
	}
	return l
}

// TestStatusDue: a change to the ledger's admissions, the conditions or
// the observed generation is written at once; a change to counts alone, or
// a ledger that only lost entries of finished operations, waits for the
// counts interval after the last status write; an unchanged status never.
func TestStatusDue(t *testing.T) {
	base := admission.Plan{Ledger: ledger("a", "b"), Limit: 3, Active: 2, Queued: 1, Finished: 4}
	with := func(edit func(*admission.Plan)) admission.Plan {
		p := base
		p.Ledger = append([]opsv1.LedgerEntry(nil), base.Ledger...)
		edit(&p)
		return p
	}
	cases := []struct {
		name       string
		plan       admission.Plan
		terminated bool
		editStored func(*opsv1.OpsSession) // the stored session, after its status was written from base
		lastWrite  *time.Duration          // when this process last wrote the status, relative to now; nil for never
		want       time.Duration
	}{
		{name: "unchanged: never", plan: base, want: -1},
		{name: "unchanged, just written: never", plan: base, lastWrite: ptr.To(time.Duration(0)), want: -1},
		{name: "unchanged, though the clock moved past the conditions' times: never", plan: base,
			lastWrite: ptr.To(-time.Hour), want: -1},

		{name: "counts only, after a quiet spell: now",
			plan: with(func(p *admission.Plan) { p.Finished = 5 }), want: 0},
		{name: "counts only, status written 3s ago: the rest of the interval",
			plan: with(func(p *admission.Plan) { p.Queued = 0 }), lastWrite: ptr.To(-3 * time.Second), want: 7 * time.Second},
		{name: "counts only, written just now: the whole interval",
			plan: with(func(p *admission.Plan) { p.Active = 1 }), lastWrite: ptr.To(time.Duration(0)), want: interval},
		{name: "counts only, written exactly one interval ago: now",
			plan: with(func(p *admission.Plan) { p.Finished = 9 }), lastWrite: ptr.To(-interval), want: 0},
		{name: "ledger lost a finished operation's entry: counts only, waits",
			plan:      with(func(p *admission.Plan) { p.Ledger, p.Active, p.Finished = ledger("b"), 1, 5 }),
			lastWrite: ptr.To(-time.Second), want: 9 * time.Second},
		{name: "ledger emptied: counts only, waits",
			plan: with(func(p *admission.Plan) { p.Ledger, p.Active = nil, 0 }), lastWrite: ptr.To(-time.Second), want: 9 * time.Second},

		{name: "ledger grew: now, however recent the last write",
			plan:      with(func(p *admission.Plan) { p.Ledger, p.Active = ledger("a", "b", "c"), 3 }),
			lastWrite: ptr.To(time.Duration(0)), want: 0},
		{name: "ledger entry replaced (same name, new UID): now",
			plan: with(func(p *admission.Plan) { p.Ledger[1].UID = "uid-b2" }), lastWrite: ptr.To(time.Duration(0)), want: 0},
		{name: "ledger swapped one entry for another of the same size: now",
			plan: with(func(p *admission.Plan) { p.Ledger = ledger("a", "c") }), lastWrite: ptr.To(time.Duration(0)), want: 0},
		{name: "conditions change (maxConcurrent in the Ready message): now",
			plan: with(func(p *admission.Plan) { p.Limit = 5 }), lastWrite: ptr.To(time.Duration(0)), want: 0},
		{name: "termination carried out: now",
			plan: with(func(p *admission.Plan) { p.Ledger, p.Active, p.Queued = nil, 0, 0 }), terminated: true,
			lastWrite: ptr.To(time.Duration(0)), want: 0},
		{name: "termination requested: now",
			plan:       base,
			editStored: func(s *opsv1.OpsSession) { s.Spec.Termination = &opsv1.Termination{Reason: "mob disbanded"} },
			lastWrite:  ptr.To(time.Duration(0)), want: 0},
		{name: "spec edited (generation moved): now",
			plan:       base,
			editStored: func(s *opsv1.OpsSession) { s.Generation++ },
			lastWrite:  ptr.To(time.Duration(0)), want: 0},
		{name: "another session's recent write does not hold this one back",
			plan: with(func(p *admission.Plan) { p.Finished = 5 }), lastWrite: nil, want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(statusT0)
			stored := testSession("s")
			admission.SetSessionStatus(stored, base, false, clk.Now())
			if tc.editStored != nil {
				tc.editStored(stored)
			}
			clk.Step(time.Hour)
			r := &OpsSessionReconciler{CountsInterval: interval, Clock: clk}
			// Another session wrote just now: throttles are per session.
			r.throttle.mark("ns/other/counts", clk.Now())
			if tc.lastWrite != nil {
				r.throttle.mark("ns/s/counts", clk.Now().Add(*tc.lastWrite))
			}
			before := stored.DeepCopy()
			if got := r.statusDue(stored, tc.plan, tc.terminated, clk.Now()); got != tc.want {
				t.Errorf("statusDue = %v, want %v", got, tc.want)
			}
			if diff := cmp.Diff(before, stored); diff != "" {
				t.Errorf("statusDue changed the session (-before +after):\n%s", diff)
			}
		})
	}
}

// TestStatusDueFollowsTheClock: a burst of count-only changes costs one
// write per interval, and each wait ends exactly when the interval does.
func TestStatusDueFollowsTheClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(statusT0)
	r := &OpsSessionReconciler{CountsInterval: interval, Clock: clk}
	sess := testSession("s")
	plan := admission.Plan{Ledger: ledger("a"), Limit: 3, Active: 1}
	admission.SetSessionStatus(sess, plan, false, clk.Now())

	writes := 0
	write := func() {
		admission.SetSessionStatus(sess, plan, false, clk.Now())
		r.throttle.mark("ns/s/counts", clk.Now()) // as writeStatus does after a successful write
		writes++
	}
	// One finished operation per second for 25 seconds.
	for range 25 {
		plan.Finished++
		switch due := r.statusDue(sess, plan, false, clk.Now()); {
		case due == 0:
			write()
		case due < 0:
			t.Fatalf("at %v: counts changed, statusDue says never", clk.Since(statusT0))
		case due > interval:
			t.Fatalf("at %v: wait %v is longer than the interval", clk.Since(statusT0), due)
		}
		clk.Step(time.Second)
	}
	// Written at 0s, 10s and 20s.
	if writes != 3 {
		t.Fatalf("%d writes in 25s of count-only changes, want 3", writes)
	}
	due := r.statusDue(sess, plan, false, clk.Now())
	if due != 5*time.Second {
		t.Fatalf("at 25s, last written at 20s: wait %v, want 5s", due)
	}
	clk.Step(due)
	if due = r.statusDue(sess, plan, false, clk.Now()); due != 0 {
		t.Fatalf("when the wait ran out: %v, want now", due)
	}
	write()
	if due = r.statusDue(sess, plan, false, clk.Now()); due != -1 {
		t.Fatalf("after the write: %v, want never", due)
	}
}
