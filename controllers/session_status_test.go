package controllers

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/admission"
)

// eventLog is an event recorder that keeps what it is given, in order.
type eventLog struct {
	mu     sync.Mutex
	events []sentEvent
}

type sentEvent struct {
	Object, Type, Reason, Action, Note string
}

func (l *eventLog) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := ""
	if o, ok := regarding.(metav1.Object); ok {
		name = o.GetNamespace() + "/" + o.GetName()
	}
	l.events = append(l.events, sentEvent{name, eventtype, reason, action, fmt.Sprintf(note, args...)})
}

func (l *eventLog) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, eventtype, reason, action, note string, args ...any) {
	l.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// take returns the events sent since the last take.
func (l *eventLog) take() []sentEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.events
	l.events = nil
	return out
}

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

// digestRun drives emitDigests for one session the way Reconcile does.
type digestRun struct {
	t    *testing.T
	r    *OpsSessionReconciler
	log  *eventLog
	clk  *clocktesting.FakeClock
	sess *opsv1.OpsSession
}

func newDigestRun(t *testing.T) *digestRun {
	log := &eventLog{}
	clk := clocktesting.NewFakeClock(statusT0)
	return &digestRun{t: t, log: log, clk: clk, sess: testSession("s"),
		r: &OpsSessionReconciler{CountsInterval: interval, Recorder: log, Clock: clk}}
}

// reasonTerminated is the session's digest of terminated operations.
const reasonTerminated = "Terminated"

// sessS is the digest runs' session, as events name it.
const sessS = "ns/s"

var digestDetail = map[string]string{reasonTerminated: " (mob disbanded)", opsv1.ReasonQueued: " (maxConcurrent 3)"}

// pass runs one pass with this batch and checks the wait it returns.
func (d *digestRun) pass(batch map[string][]string, wantNext time.Duration) []sentEvent {
	d.t.Helper()
	if next := d.r.emitDigests(d.sess, batch, digestDetail, d.clk.Now()); next != wantNext {
		d.t.Fatalf("at %v: emitDigests returned %v, want %v", d.clk.Since(statusT0), next, wantNext)
	}
	return d.log.take()
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

// TestEmitDigests: the first change after a quiet spell is sent at once;
// later ones wait for the interval and go out together, with the first few
// names and a count of the rest.
func TestEmitDigests(t *testing.T) {
	d := newDigestRun(t)
	if got := d.pass(nil, 0); len(got) != 0 {
		t.Fatalf("nothing happened, yet sent %v", got)
	}

	got := d.pass(map[string][]string{opsv1.ReasonQueued: {"q1", "q2"}}, 0)
	want := []sentEvent{{sessS, corev1.EventTypeNormal, opsv1.ReasonQueued, opsv1.ReasonQueued, "queued 2 operation(s) (maxConcurrent 3): q1, q2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first change after a quiet spell (-want +got):\n%s", diff)
	}

	d.clk.Step(2 * time.Second)
	if got := d.pass(map[string][]string{opsv1.ReasonQueued: {"q3"}}, 8*time.Second); len(got) != 0 {
		t.Fatalf("2s after the last digest: sent %v, want it held back", got)
	}
	d.clk.Step(3 * time.Second)
	if got := d.pass(map[string][]string{opsv1.ReasonQueued: names("more", 11)}, 5*time.Second); len(got) != 0 {
		t.Fatalf("5s after the last digest: sent %v, want it held back", got)
	}
	d.clk.Step(5*time.Second - time.Millisecond)
	if got := d.pass(nil, time.Millisecond); len(got) != 0 {
		t.Fatalf("1ms before the interval ends: sent %v", got)
	}
	d.clk.Step(time.Millisecond)
	got = d.pass(nil, 0)
	want = []sentEvent{{sessS, corev1.EventTypeNormal, opsv1.ReasonQueued, opsv1.ReasonQueued,
		"queued 12 operation(s) (maxConcurrent 3): q3, more-00, more-01, more-02, more-03, more-04, more-05, more-06, more-07, more-08 and 2 more"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("when the interval ran out, the held-back operations in one digest (-want +got):\n%s", diff)
	}
	if got := d.pass(nil, 0); len(got) != 0 {
		t.Fatalf("the digest was sent twice: %v", got)
	}

	// Quiet for the interval after that digest: the next change goes out at once.
	d.clk.Step(interval)
	got = d.pass(map[string][]string{opsv1.ReasonQueued: {"q4"}}, 0)
	if len(got) != 1 || got[0].Note != "queued 1 operation(s) (maxConcurrent 3): q4" {
		t.Fatalf("after a quiet spell: %v, want q4 at once", got)
	}
}

// TestEmitDigestsReasonsAndSessionsApart: each reason and each session has
// its own digest and interval; the wait returned is the nearest one.
func TestEmitDigestsReasonsAndSessionsApart(t *testing.T) {
	d := newDigestRun(t)
	got := d.pass(map[string][]string{opsv1.ReasonQueued: {"q1"}}, 0)
	if len(got) != 1 {
		t.Fatalf("first Queued: %v", got)
	}
	d.clk.Step(4 * time.Second)
	// Terminated has its own interval: sent at once. Queued waits 6s more.
	got = d.pass(map[string][]string{reasonTerminated: {"t1", "t2"}, opsv1.ReasonQueued: {"q2"}}, 6*time.Second)
	want := []sentEvent{{sessS, corev1.EventTypeNormal, reasonTerminated, reasonTerminated, "terminated 2 operation(s) (mob disbanded): t1, t2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Terminated beside a held-back Queued (-want +got):\n%s", diff)
	}
	d.clk.Step(2 * time.Second)
	// Both wait now: Queued 4s, Terminated 8s; the nearest is returned.
	if got := d.pass(map[string][]string{reasonTerminated: {"t3"}}, 4*time.Second); len(got) != 0 {
		t.Fatalf("both held back, yet sent %v", got)
	}
	// Another session is not held back by this one's digests.
	other := &digestRun{t: t, r: d.r, log: d.log, clk: d.clk, sess: testSession("other")}
	got = other.pass(map[string][]string{opsv1.ReasonQueued: {"o1"}}, 0)
	if len(got) != 1 || got[0].Object != "ns/other" {
		t.Fatalf("another session's first Queued: %v, want it sent at once", got)
	}
	d.clk.Step(4 * time.Second)
	got = d.pass(nil, 4*time.Second)
	if len(got) != 1 || got[0].Reason != opsv1.ReasonQueued || got[0].Note != "queued 1 operation(s) (maxConcurrent 3): q2" {
		t.Fatalf("Queued's interval ran out: %v", got)
	}
	d.clk.Step(4 * time.Second)
	got = d.pass(nil, 0)
	if len(got) != 1 || got[0].Reason != reasonTerminated || got[0].Note != "terminated 1 operation(s) (mob disbanded): t3" {
		t.Fatalf("Terminated's interval ran out: %v", got)
	}

	// The session goes away: its intervals are forgotten, another's are kept.
	d.r.throttle.forget(client.ObjectKeyFromObject(d.sess))
	if got := d.pass(map[string][]string{opsv1.ReasonQueued: {"q5"}}, 0); len(got) != 1 {
		t.Fatalf("a session created again under the same name: %v, want its first digest at once", got)
	}
	// other's last Queued digest went out at 6s; it is 14s now.
	if got := other.pass(map[string][]string{opsv1.ReasonQueued: {"o2"}}, 2*time.Second); len(got) != 0 {
		t.Fatalf("forgetting one session released another's digest: %v", got)
	}
}

// TestEmitDigestsWithoutRecorder: with no recorder the digest is still
// taken and spaced, so it does not pile up.
func TestEmitDigestsWithoutRecorder(t *testing.T) {
	d := newDigestRun(t)
	d.r.Recorder = nil
	d.pass(map[string][]string{opsv1.ReasonQueued: names("q", 20)}, 0)
	if d.r.digest.has("ns/s/Queued") {
		t.Fatal("the digest was kept after its turn")
	}
	d.pass(map[string][]string{opsv1.ReasonQueued: {"x"}}, interval)
}

// TestDigestMessage: names are capped, the rest counted, and the detail is
// the latest one given.
func TestDigestMessage(t *testing.T) {
	var dg digest
	dg.add("k", names("a", 3), " (old)")
	dg.add("k", names("b", 9), " (new)")
	b := dg.take("k")
	if want := "terminated 12 operation(s) (new): a-00, a-01, a-02, b-00, b-01, b-02, b-03, b-04, b-05, b-06 and 2 more"; b.message(reasonTerminated) != want {
		t.Fatalf("message = %q\nwant      %q", b.message(reasonTerminated), want)
	}
	if dg.take("k") != nil || dg.has("k") {
		t.Fatal("take left the batch behind")
	}
	dg.add("k", names("c", digestNames), "")
	if want := "queued 10 operation(s): c-00, c-01, c-02, c-03, c-04, c-05, c-06, c-07, c-08, c-09"; dg.take("k").message("Queued") != want {
		t.Fatalf("exactly %d names: want no \"and N more\"", digestNames)
	}
}
