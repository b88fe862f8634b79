package opsclient

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/utils/clock"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// DefaultProgressInterval is how often, at most, a Runtime writes one
// operation's progress unless WithProgressInterval says otherwise.
const DefaultProgressInterval = time.Second

// Option configures a Runtime.
type Option func(*Runtime)

// WithProgressInterval sets how often, at most, ReportProgress writes one
// operation's progress to the API server; 0 writes every report
// (write-through).
//
// With an interval, the first report after a quiet interval is written at
// once and returns the API server's answer. Reports within the interval
// after a write are kept in the Registry, the latest message and percent
// with an exact count, and written together when the interval is up, so a
// chatty agent costs one write per interval however often it reports. The
// written progress.count counts every report, the coalesced ones included.
// Any other call on the operation (PeerReady, CompleteOperation,
// FailOperation, CancelOperation, MarkRetired, ...) carries the pending
// reports in its own write, at no extra cost, so the final status holds the
// last report; Flush and Close write what is pending. This Registry's
// Snapshot counts the pending reports; other readers see them at most one
// interval late, and so does the heartbeat: for an operation with a
// HeartbeatTimeout the interval is at most a quarter of it.
//
// A coalesced report returns nil. Should the operation end before its write
// (a cancel, a deadline), the pending reports are dropped, as reports made
// after the end would be refused, and the next ReportProgress on it returns
// the refusal.
func WithProgressInterval(d time.Duration) Option {
	return func(rt *Runtime) { rt.progressInterval = max(d, 0) }
}

// progressBuf is one operation's progress reports not yet written, and the
// state of its coalescing interval. It exists from a progress write until
// the interval after the last write is up with nothing pending.
type progressBuf struct {
	// wmu serialises this Registry's writes of the operation, so a
	// background flush never lands after the call that ends it.
	wmu sync.Mutex

	// Under Registry.pmu:
	pending pendingProgress
	// written is when the last write of the operation started.
	written time.Time
	// inflight counts writes that took their pending reports and have not
	// finished; timer is the end of the current interval.
	inflight int
	timer    clock.Timer
}

// pendingProgress is n reports, the latest being last, made at at.
type pendingProgress struct {
	n    int64
	last ProgressUpdate
	at   time.Time
}

func (p *pendingProgress) add(q pendingProgress) {
	if q.n == 0 {
		return
	}
	if p.n == 0 || !q.at.Before(p.at) {
		p.last, p.at = q.last, q.at
	}
	p.n += q.n
}

// applyTo writes the pending reports into op's status as n report_progress
// calls would: count up by n, the latest message and percent, and the
// heartbeat at the latest report. It returns false, leaving op as it was,
// when the operation can no longer take progress.
func (p pendingProgress) applyTo(op *opsv1.Operation) bool {
	if p.n == 0 {
		return true
	}
	if err := lifecycle.Apply(op, lifecycle.ReportProgress, lifecycle.Args{Message: p.last.Message, Percent: p.last.Percent}, p.at); err != nil {
		return false
	}
	op.Status.Progress.Count += p.n - 1
	return true
}

// interval is the coalescing interval for the operation, or 0 for
// write-through.
func (r *Registry) interval(id string) time.Duration {
	iv := r.rt.progressInterval
	if iv <= 0 {
		return 0
	}
	if op := r.recall(id); op != nil && op.Spec.HeartbeatTimeout != nil && op.Spec.HeartbeatTimeout.Duration > 0 {
		iv = min(iv, op.Spec.HeartbeatTimeout.Duration/4)
	}
	return iv
}

// reportProgress coalesces a report into the operation's pending ones when
// it was written within the interval, and otherwise writes it at once.
func (r *Registry) reportProgress(ctx context.Context, id string, p ProgressUpdate) error {
	r.pmu.Lock()
	if b := r.progress[id]; b != nil {
		b.pending.add(pendingProgress{n: 1, last: p, at: r.rt.clock.Now()})
		r.pmu.Unlock()
		return nil
	}
	// Quiet for an interval (or never written): write this report now, as
	// write-through would, and coalesce what comes while it is under way.
	// Should it fail, the caller has the error and the report is not kept.
	r.progress[id] = &progressBuf{}
	r.pmu.Unlock()
	return r.call(ctx, id, lifecycle.ReportProgress, lifecycle.Args{Message: p.Message, Percent: p.Percent})
}

// Flush writes the pending progress reports of every operation of this
// Registry, and returns the first error. An operation that ended meanwhile
// has its reports dropped, without error.
func (r *Registry) Flush(ctx context.Context) error {
	r.pmu.Lock()
	var ids []string
	for id, b := range r.progress {
		if b.pending.n > 0 {
			ids = append(ids, id)
		}
	}
	r.pmu.Unlock()
	var first error
	for _, id := range ids {
		if err := r.write(ctx, id, nil); err != nil && !endedError(err) && first == nil {
			first = err
		}
	}
	return first
}

// buffer returns the operation's progress buffer, if any.
func (r *Registry) buffer(id string) *progressBuf {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	return r.progress[id]
}

// take hands the pending reports to a write, which holds b.wmu.
func (r *Registry) take(b *progressBuf) pendingProgress {
	if b == nil {
		return pendingProgress{}
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	p := b.pending
	b.pending = pendingProgress{}
	b.inflight++
	return p
}

// settle ends a write that took p: on success the interval restarts; when
// the operation has ended (final, gone, or refused progress) the buffer
// goes, and with it what was pending; on any other error p is pending again.
func (r *Registry) settle(id string, b *progressBuf, p pendingProgress, started time.Time, err error, final bool) {
	if b == nil {
		return
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	b.inflight--
	if r.progress[id] != b {
		return
	}
	switch {
	case final || endedError(err):
		r.dropLocked(id, b)
		return
	case err == nil:
		b.written = started
		r.armLocked(id, b, started)
	default:
		// Try again an interval from now.
		b.pending.add(p)
		r.armLocked(id, b, r.rt.clock.Now())
	}
}

// settleNothing ends a write that found nothing to write.
func (r *Registry) settleNothing(id string, b *progressBuf) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	b.inflight--
	if r.progress[id] == b {
		r.armLocked(id, b, b.written)
	}
}

// armLocked starts the timer for the end of the interval that began at
// from, unless one is running.
func (r *Registry) armLocked(id string, b *progressBuf, from time.Time) {
	if b.timer != nil || r.rt.ctx.Err() != nil {
		return
	}
	d := from.Add(r.interval(id)).Sub(r.rt.clock.Now())
	// The timer's callback runs on the clock's goroutine (a fake clock's
	// Step); the write runs on its own.
	b.timer = r.rt.timers.AfterFunc(max(d, 0), func() { go r.intervalUp(id, b) })
}

func (r *Registry) dropLocked(id string, b *progressBuf) {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	delete(r.progress, id)
}

// intervalUp writes what came in during the interval, or, when nothing did,
// forgets the operation: the next report is written at once.
func (r *Registry) intervalUp(id string, b *progressBuf) {
	if h := r.rt.intervalDone; h != nil {
		defer h()
	}
	r.pmu.Lock()
	if r.progress[id] != b {
		r.pmu.Unlock()
		return
	}
	b.timer = nil
	if r.rt.ctx.Err() != nil {
		// Closed: Close has flushed what it could.
		r.dropLocked(id, b)
		r.pmu.Unlock()
		return
	}
	if b.pending.n == 0 {
		if b.inflight == 0 {
			r.dropLocked(id, b)
		}
		// else the write under way arms the next interval.
		r.pmu.Unlock()
		return
	}
	r.pmu.Unlock()
	ctx, cancel := context.WithTimeout(r.rt.ctx, flushTimeout)
	defer cancel()
	// On an error other than the operation's end, the reports stay pending
	// and the next interval tries again.
	_ = r.write(ctx, id, nil)
}

// flushTimeout bounds one background flush, and Close's.
const flushTimeout = 10 * time.Second

// endedError: the operation can no longer take progress, so what is
// pending for it is dropped.
func endedError(err error) bool {
	return errors.Is(err, lifecycle.ErrNotFound) || errors.Is(err, lifecycle.ErrInvalidTransition)
}

// pendingFor is the operation's reports not yet written, for Snapshot.
func (r *Registry) pendingFor(id string) pendingProgress {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if b := r.progress[id]; b != nil {
		return b.pending
	}
	return pendingProgress{}
}
