package opsclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Unit tests of progress coalescing on a fake client and a fake clock: the
// clock's Step runs the intervals, and each interval's work is awaited
// through the Runtime's intervalDone hook, so nothing here depends on how
// fast the machine is.

const (
	testNS      = "ns"
	testSession = "session"
	testOp      = "op-1"
)

type progressEnv struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	c     client.WithWatch // the store, unintercepted
	rt    *Runtime
	reg   *Registry
	done  chan struct{} // one value per interval end
	mu    sync.Mutex
	wrote []int64 // progress.count of each status write of the operation
	// fail, when set, fails the next status write with this error.
	fail error
}

func newProgressEnv(t *testing.T, interval time.Duration, opts ...func(*opsv1.Operation)) *progressEnv {
	t.Helper()
	e := &progressEnv{t: t, clk: clocktesting.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), done: make(chan struct{}, 64)}
	session := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: testSession, Namespace: testNS, UID: "session-uid"}}
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: testOp, Namespace: testNS},
		Spec:       opsv1.OperationSpec{SessionName: testSession, Kind: opsv1.BackgroundToolOp},
		Status:     opsv1.OperationStatus{Phase: opsv1.PhaseRunning},
	}
	for _, o := range opts {
		o(op)
	}
	e.c = fake.NewClientBuilder().WithScheme(Scheme()).
		WithStatusSubresource(&opsv1.Operation{}, &opsv1.OpsSession{}).
		WithObjects(session, op).
		WithIndex(&opsv1.Operation{}, "spec.sessionName", func(o client.Object) []string {
			return []string{o.(*opsv1.Operation).Spec.SessionName}
		}).Build()
	counted := interceptor.NewClient(e.c, interceptor.Funcs{
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if o, ok := obj.(*opsv1.Operation); ok && sub == "status" {
				e.mu.Lock()
				fail := e.fail
				e.fail = nil
				e.mu.Unlock()
				if fail != nil {
					return fail
				}
				if err := c.SubResource(sub).Update(ctx, obj, opts...); err != nil {
					return err
				}
				e.mu.Lock()
				var n int64
				if o.Status.Progress != nil {
					n = o.Status.Progress.Count
				}
				e.wrote = append(e.wrote, n)
				e.mu.Unlock()
				return nil
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
	e.rt = NewFromClient(counted, testNS, e.clk, WithProgressInterval(interval))
	e.rt.intervalDone = func() { e.done <- struct{}{} }
	t.Cleanup(e.rt.Close)
	reg, err := e.rt.OpsLifecycleRegistry(context.Background(), testSession)
	if err != nil {
		t.Fatal(err)
	}
	e.reg = reg
	return e
}

// writes is the progress.count of each status write so far.
func (e *progressEnv) writes() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int64(nil), e.wrote...)
}

func (e *progressEnv) failNext(err error) {
	e.mu.Lock()
	e.fail = err
	e.mu.Unlock()
}

func (e *progressEnv) report(i int) error {
	return e.reg.ReportProgress(context.Background(), testOp,
		ProgressUpdate{Message: fmt.Sprintf("chunk %d", i), Percent: ptr.To(float64(i) / 100)})
}

func (e *progressEnv) mustReport(i int) {
	e.t.Helper()
	if err := e.report(i); err != nil {
		e.t.Fatalf("report %d: %v", i, err)
	}
}

// step moves the clock and waits for the interval ends it triggers: a
// timer's work runs on its own goroutine.
func (e *progressEnv) step(d time.Duration, intervalEnds int) {
	e.t.Helper()
	e.clk.Step(d)
	for range intervalEnds {
		select {
		case <-e.done:
		case <-time.After(30 * time.Second): // a hang, not a timing assertion
			e.t.Fatalf("an interval end did not finish")
		}
	}
}

func (e *progressEnv) stored() *opsv1.Operation {
	e.t.Helper()
	op := &opsv1.Operation{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: testOp}, op); err != nil {
		e.t.Fatal(err)
	}
	return op
}

func (e *progressEnv) wantWrites(want ...int64) {
	e.t.Helper()
	if got := e.writes(); fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("status writes with progress.count %v, want %v", got, want)
	}
}

func TestProgressWriteThroughWithZeroInterval(t *testing.T) {
	e := newProgressEnv(t, 0)
	for i := 1; i <= 5; i++ {
		e.mustReport(i)
	}
	e.wantWrites(1, 2, 3, 4, 5)
	if e.clk.HasWaiters() {
		t.Errorf("write-through started a timer")
	}
}

// k = 50 reports over 2 s, one every 40 ms, then Complete: one write at
// once, one at the end of the first interval, and the rest in the
// completing write, whose status holds the last report and the exact count.
func TestProgressChattyAgentCoalesces(t *testing.T) {
	e := newProgressEnv(t, time.Second)
	const k = 50
	for i := 1; i <= k; i++ {
		e.mustReport(i)
		// The first interval ends with the 25th step (t = 1 s).
		ends := 0
		if i == 25 {
			ends = 1
		}
		if i < k {
			e.step(40*time.Millisecond, ends)
		}
	}
	e.wantWrites(1, 25)
	snap, err := e.reg.Snapshot(context.Background(), testOp)
	if err != nil {
		t.Fatal(err)
	}
	if snap.ProgressCount != k || snap.ProgressMessage != "chunk 50" {
		t.Errorf("snapshot: count %d, message %q; want %d and the latest report", snap.ProgressCount, snap.ProgressMessage, k)
	}
	if err := e.reg.CompleteOperation(context.Background(), testOp, opsv1.OperationResult{Content: "done"}); err != nil {
		t.Fatal(err)
	}
	e.wantWrites(1, 25, k)
	op := e.stored()
	p := op.Status.Progress
	if op.Status.Phase != opsv1.PhaseCompleted || p == nil || p.Count != k || p.Message != "chunk 50" || p.Percent == nil || *p.Percent != 0.5 {
		t.Fatalf("final status: phase %s, progress %+v; want Completed with the 50th report", op.Status.Phase, p)
	}
	// The heartbeat is the last report's time, not the completion's.
	if hb := op.Status.LastHeartbeatTime; hb == nil || !hb.Time.Equal(e.clk.Now()) {
		t.Errorf("lastHeartbeatTime %v, want %v", hb, e.clk.Now())
	}
	if e.clk.HasWaiters() {
		t.Errorf("a timer is left after the operation ended")
	}
	// Reports after the end are refused, as Meerkat's are.
	if err := e.report(51); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("report after Complete: %v, want InvalidTransition", err)
	}
}

// Reports that stop are written at the end of the interval; after a quiet
// interval the next report is written at once again.
func TestProgressQuietIntervalFlushesAndResets(t *testing.T) {
	e := newProgressEnv(t, time.Second)
	e.mustReport(1)
	e.mustReport(2)
	e.mustReport(3)
	e.wantWrites(1)
	snap, err := e.reg.Snapshot(context.Background(), testOp)
	if err != nil {
		t.Fatal(err)
	}
	if snap.ProgressCount != 3 || snap.ProgressMessage != "chunk 3" {
		t.Errorf("snapshot before the flush: count %d, message %q; want 3, chunk 3", snap.ProgressCount, snap.ProgressMessage)
	}
	e.step(999*time.Millisecond, 0)
	e.wantWrites(1)
	e.step(time.Millisecond, 1)
	e.wantWrites(1, 3)
	if p := e.stored().Status.Progress; p.Count != 3 || p.Message != "chunk 3" {
		t.Errorf("stored progress %+v, want count 3, chunk 3", p)
	}
	// The next interval ends with nothing to write: no write, and the
	// registry forgets the operation.
	e.step(time.Second, 1)
	e.wantWrites(1, 3)
	if e.clk.HasWaiters() || e.reg.buffer(testOp) != nil {
		t.Errorf("an idle operation still has a timer or a buffer")
	}
	e.mustReport(4)
	e.wantWrites(1, 3, 4)
}

// Any call carries the pending reports; PeerReady is not terminal.
func TestProgressRidesOnOtherCalls(t *testing.T) {
	e := newProgressEnv(t, time.Second, func(op *opsv1.Operation) { op.Spec.Kind = opsv1.MobMemberChild })
	e.mustReport(1)
	e.mustReport(2)
	e.mustReport(3)
	if err := e.reg.PeerReady(context.Background(), testOp, opsv1.PeerHandle{PeerName: "p"}); err != nil {
		t.Fatal(err)
	}
	e.wantWrites(1, 3)
	e.step(time.Second, 1) // nothing pending
	e.wantWrites(1, 3)
	if err := e.reg.MarkRetired(context.Background(), testOp); err != nil {
		t.Fatal(err)
	}
	e.wantWrites(1, 3, 3)
}

// Pending reports of an operation that ended meanwhile (the controller's
// cancel) are dropped; the next report gets the refusal.
func TestProgressDroppedWhenOperationEndsElsewhere(t *testing.T) {
	e := newProgressEnv(t, time.Second)
	e.mustReport(1)
	e.mustReport(2)
	op := e.stored()
	op.Status.Phase = opsv1.PhaseCancelled
	op.Status.Outcome = &opsv1.TerminalOutcome{Type: opsv1.PhaseCancelled}
	if err := e.c.Status().Update(context.Background(), op); err != nil {
		t.Fatal(err)
	}
	e.step(time.Second, 1)
	e.wantWrites(1)
	if e.reg.buffer(testOp) != nil {
		t.Errorf("the ended operation's buffer is kept")
	}
	if err := e.report(3); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Errorf("report on a cancelled operation: %v, want InvalidTransition", err)
	}
}

// A flush that fails for another reason keeps the reports for the next
// interval; a report written at once that fails is the caller's to retry
// and is not kept.
func TestProgressFailedWrites(t *testing.T) {
	e := newProgressEnv(t, time.Second)
	e.failNext(apierrors.NewServiceUnavailable("busy"))
	if err := e.report(1); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("first report: %v, want the write's error", err)
	}
	e.step(time.Second, 1) // nothing kept: no write
	e.wantWrites()
	e.mustReport(1)
	e.mustReport(2)
	e.mustReport(3)
	e.failNext(apierrors.NewServiceUnavailable("busy"))
	e.step(time.Second, 1) // the flush fails
	e.wantWrites(1)
	e.mustReport(4)
	e.step(time.Second, 1) // and is tried again, with the report since
	e.wantWrites(1, 4)
	if p := e.stored().Status.Progress; p.Count != 4 || p.Message != "chunk 4" {
		t.Errorf("stored progress %+v, want count 4, chunk 4", p)
	}
}

// Close writes what is pending.
func TestProgressCloseFlushes(t *testing.T) {
	e := newProgressEnv(t, time.Second)
	e.mustReport(1)
	e.mustReport(2)
	e.rt.Close()
	e.wantWrites(1, 2)
	if e.clk.HasWaiters() {
		t.Errorf("Close left a timer")
	}
}

// An operation with a heartbeat timeout is written at least four times
// within it.
func TestProgressIntervalCappedByHeartbeatTimeout(t *testing.T) {
	e := newProgressEnv(t, time.Minute, func(op *opsv1.Operation) {
		op.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 2 * time.Second}
	})
	e.mustReport(1)
	e.mustReport(2)
	e.step(499*time.Millisecond, 0)
	e.wantWrites(1)
	e.step(time.Millisecond, 1)
	e.wantWrites(1, 2)
}
