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
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
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

// sessS is the digest runs' session, as events name it.
const sessS = "ns/s"

var digestDetail = map[string]string{opsv1.EventReasonTerminated: " (mob disbanded)", opsv1.EventReasonQueued: " (maxConcurrent 3)"}

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

	got := d.pass(map[string][]string{opsv1.EventReasonQueued: {"q1", "q2"}}, 0)
	want := []sentEvent{{sessS, corev1.EventTypeNormal, opsv1.EventReasonQueued, opsv1.EventReasonQueued, "queued 2 operation(s) (maxConcurrent 3): q1, q2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first change after a quiet spell (-want +got):\n%s", diff)
	}

	d.clk.Step(2 * time.Second)
	if got := d.pass(map[string][]string{opsv1.EventReasonQueued: {"q3"}}, 8*time.Second); len(got) != 0 {
		t.Fatalf("2s after the last digest: sent %v, want it held back", got)
	}
	d.clk.Step(3 * time.Second)
	if got := d.pass(map[string][]string{opsv1.EventReasonQueued: names("more", 11)}, 5*time.Second); len(got) != 0 {
		t.Fatalf("5s after the last digest: sent %v, want it held back", got)
	}
	d.clk.Step(5*time.Second - time.Millisecond)
	if got := d.pass(nil, time.Millisecond); len(got) != 0 {
		t.Fatalf("1ms before the interval ends: sent %v", got)
	}
	d.clk.Step(time.Millisecond)
	got = d.pass(nil, 0)
	want = []sentEvent{{sessS, corev1.EventTypeNormal, opsv1.EventReasonQueued, opsv1.EventReasonQueued,
		"queued 12 operation(s) (maxConcurrent 3): q3, more-00, more-01, more-02, more-03, more-04, more-05, more-06, more-07, more-08 and 2 more"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("when the interval ran out, the held-back operations in one digest (-want +got):\n%s", diff)
	}
	if got := d.pass(nil, 0); len(got) != 0 {
		t.Fatalf("the digest was sent twice: %v", got)
	}

	// Quiet for the interval after that digest: the next change goes out at once.
	d.clk.Step(interval)
	got = d.pass(map[string][]string{opsv1.EventReasonQueued: {"q4"}}, 0)
	if len(got) != 1 || got[0].Note != "queued 1 operation(s) (maxConcurrent 3): q4" {
		t.Fatalf("after a quiet spell: %v, want q4 at once", got)
	}
}

// TestEmitDigestsReasonsAndSessionsApart: each reason and each session has
// its own digest and interval; the wait returned is the nearest one.
func TestEmitDigestsReasonsAndSessionsApart(t *testing.T) {
	d := newDigestRun(t)
	got := d.pass(map[string][]string{opsv1.EventReasonQueued: {"q1"}}, 0)
	if len(got) != 1 {
		t.Fatalf("first Queued: %v", got)
	}
	d.clk.Step(4 * time.Second)
	// Terminated has its own interval: sent at once. Queued waits 6s more.
	got = d.pass(map[string][]string{opsv1.EventReasonTerminated: {"t1", "t2"}, opsv1.EventReasonQueued: {"q2"}}, 6*time.Second)
	want := []sentEvent{{sessS, corev1.EventTypeNormal, opsv1.EventReasonTerminated, opsv1.EventReasonTerminated, "terminated 2 operation(s) (mob disbanded): t1, t2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Terminated beside a held-back Queued (-want +got):\n%s", diff)
	}
	d.clk.Step(2 * time.Second)
	// Both wait now: Queued 4s, Terminated 8s; the nearest is returned.
	if got := d.pass(map[string][]string{opsv1.EventReasonTerminated: {"t3"}}, 4*time.Second); len(got) != 0 {
		t.Fatalf("both held back, yet sent %v", got)
	}
	// Another session is not held back by this one's digests.
	other := &digestRun{t: t, r: d.r, log: d.log, clk: d.clk, sess: testSession("other")}
	got = other.pass(map[string][]string{opsv1.EventReasonQueued: {"o1"}}, 0)
	if len(got) != 1 || got[0].Object != "ns/other" {
		t.Fatalf("another session's first Queued: %v, want it sent at once", got)
	}
	d.clk.Step(4 * time.Second)
	got = d.pass(nil, 4*time.Second)
	if len(got) != 1 || got[0].Reason != opsv1.EventReasonQueued || got[0].Note != "queued 1 operation(s) (maxConcurrent 3): q2" {
		t.Fatalf("Queued's interval ran out: %v", got)
	}
	d.clk.Step(4 * time.Second)
	got = d.pass(nil, 0)
	if len(got) != 1 || got[0].Reason != opsv1.EventReasonTerminated || got[0].Note != "terminated 1 operation(s) (mob disbanded): t3" {
		t.Fatalf("Terminated's interval ran out: %v", got)
	}

	// The session goes away: its intervals are forgotten, another's are kept.
	d.r.throttle.forget(client.ObjectKeyFromObject(d.sess))
	if got := d.pass(map[string][]string{opsv1.EventReasonQueued: {"q5"}}, 0); len(got) != 1 {
		t.Fatalf("a session created again under the same name: %v, want its first digest at once", got)
	}
	// other's last Queued digest went out at 6s; it is 14s now.
	if got := other.pass(map[string][]string{opsv1.EventReasonQueued: {"o2"}}, 2*time.Second); len(got) != 0 {
		t.Fatalf("forgetting one session released another's digest: %v", got)
	}
}

// TestEmitDigestsWithoutRecorder: with no recorder the digest is still
// taken and spaced, so it does not pile up.
func TestEmitDigestsWithoutRecorder(t *testing.T) {
	d := newDigestRun(t)
	d.r.Recorder = nil
	d.pass(map[string][]string{opsv1.EventReasonQueued: names("q", 20)}, 0)
	if d.r.digest.has("ns/s/Queued") {
		t.Fatal("the digest was kept after its turn")
	}
	d.pass(map[string][]string{opsv1.EventReasonQueued: {"x"}}, interval)
}

// TestDigestMessage: names are capped, the rest counted, and the detail is
// the latest one given.
func TestDigestMessage(t *testing.T) {
	var dg digest
	dg.add("k", names("a", 3), " (old)")
	dg.add("k", names("b", 9), " (new)")
	b := dg.take("k")
	if want := "terminated 12 operation(s) (new): a-00, a-01, a-02, b-00, b-01, b-02, b-03, b-04, b-05, b-06 and 2 more"; b.message(opsv1.EventReasonTerminated) != want {
		t.Fatalf("message = %q\nwant      %q", b.message(opsv1.EventReasonTerminated), want)
	}
	if dg.take("k") != nil || dg.has("k") {
		t.Fatal("take left the batch behind")
	}
	dg.add("k", names("c", digestNames), "")
	if want := "queued 10 operation(s): c-00, c-01, c-02, c-03, c-04, c-05, c-06, c-07, c-08, c-09"; dg.take("k").message(opsv1.EventReasonQueued) != want {
		t.Fatalf("exactly %d names: want no \"and N more\"", digestNames)
	}
}
