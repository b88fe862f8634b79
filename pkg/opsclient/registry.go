package opsclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

// Registry is one session's operation registry.
type Registry struct {
	rt         *Runtime
	session    string
	sessionUID types.UID

	mu       sync.Mutex
	watchers map[string]int // pending watchers per operation, this process only
	// known holds the object as this registry last wrote or saw it, so a
	// call can write without reading first; a stale one costs a conflict
	// and a read, never a wrong write (the write carries its resourceVersion).
	known map[string]*opsv1.Operation

	watchOnce sync.Once
	watch     *sessionWatch
	watchErr  error

	// pmu guards progress: each operation's progress reports not yet
	// written (WithProgressInterval).
	pmu      sync.Mutex
	progress map[string]*progressBuf
}

// maxKnown bounds the known-object cache; past it, it starts over.
const maxKnown = 8192

func (r *Registry) remember(op *opsv1.Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known == nil || len(r.known) >= maxKnown {
		r.known = map[string]*opsv1.Operation{}
	}
	if lifecycle.IsFinal(op.Status.Phase) {
		delete(r.known, op.Name)
		return
	}
	r.known[op.Name] = op.DeepCopy()
}

func (r *Registry) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.known, id)
}

func (r *Registry) recall(id string) *opsv1.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op, ok := r.known[id]; ok {
		return op.DeepCopy()
	}
	return nil
}

// sessionWatch starts, once, the registry's shared watch of its session's
// operations, and waits for it to sync.
func (r *Registry) sessionWatch(ctx context.Context) (*sessionWatch, error) {
	r.watchOnce.Do(func() {
		sw := newSessionWatch(r.rt.c, r.rt.ns, r.session)
		if !sw.run(r.rt.ctx) {
			r.watchErr = fmt.Errorf("watching operations of session %s: %w", r.session, r.rt.ctx.Err())
			return
		}
		r.watch = sw
	})
	return r.watch, r.watchErr
}

// conflictBackoff retries optimistic-lock conflicts quickly and for long
// enough that a busy controller writing the same object cannot starve us.
var conflictBackoff = wait.Backoff{Steps: 12, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Cap: time.Second}

// Session is the registry's session id.
func (r *Registry) Session() string { return r.session }

// RegisterOperation creates the operation and waits for the session's
// admission decision. A rejection is returned as MaxConcurrentExceeded with
// the limit and active count, and the refused object is removed. An id still
// retained, even as terminal, gives AlreadyRegistered; an evicted id may
// register again. Under a Queue-policy session it waits for a slot until ctx
// ends, and then withdraws the operation.
func (r *Registry) RegisterOperation(ctx context.Context, spec OperationSpec) error {
	now := r.rt.clock.Now()
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: spec.ID, Namespace: r.rt.ns,
			Annotations: map[string]string{opsv1.AnnotationCreatedAt: now.UTC().Format(time.RFC3339Nano)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSession",
				Name: r.session, UID: r.sessionUID, Controller: ptr.To(true),
			}},
		},
		Spec: opsv1.OperationSpec{
			SessionName: r.session, Kind: spec.Kind, DisplayName: spec.DisplayName,
			SourceLabel: spec.SourceLabel, ChildSessionID: spec.ChildSessionID,
			ExpectPeerChannel: spec.ExpectPeerChannel,
		},
	}
	if spec.ProvisioningTimeout > 0 {
		op.Spec.ProvisioningTimeout = &metav1.Duration{Duration: spec.ProvisioningTimeout}
	}
	if spec.HeartbeatTimeout > 0 {
		op.Spec.HeartbeatTimeout = &metav1.Duration{Duration: spec.HeartbeatTimeout}
	}
	if err := r.rt.c.Create(ctx, op); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return &lifecycle.AlreadyRegisteredError{ID: spec.ID}
		}
		return err
	}
	decided, err := r.waitFor(ctx, op.Name, op.UID, func(o *opsv1.Operation) bool {
		return lifecycle.Normalize(o.Status.Phase) != opsv1.PhasePending
	})
	if err != nil {
		if ctx.Err() != nil {
			r.withdraw(op)
		}
		return err
	}
	if decided.Status.Phase != opsv1.PhaseRejected {
		r.remember(decided)
		return nil
	}
	r.withdraw(decided)
	rej := decided.Status.Rejection
	if rej != nil && rej.Reason == opsv1.RejectionMaxConcurrentExceeded && rej.Limit != nil && rej.Active != nil {
		return &lifecycle.MaxConcurrentExceededError{Limit: int(*rej.Limit), Active: int(*rej.Active)}
	}
	return &OwnerTerminatedError{SessionID: r.session, ID: spec.ID}
}

// withdraw deletes an operation this registry created and no longer wants.
func (r *Registry) withdraw(op *opsv1.Operation) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.rt.c.Delete(ctx, op, client.Preconditions{UID: &op.UID})
}

// ProvisioningSucceeded moves a Provisioning operation to Running.
func (r *Registry) ProvisioningSucceeded(ctx context.Context, id string) error {
	return r.call(ctx, id, lifecycle.ProvisioningSucceeded, lifecycle.Args{})
}

// ProvisioningFailed fails a Provisioning operation.
func (r *Registry) ProvisioningFailed(ctx context.Context, id, errMsg string) error {
	return r.call(ctx, id, lifecycle.ProvisioningFailed, lifecycle.Args{Error: errMsg})
}

// AbortProvisioning aborts a Provisioning operation.
func (r *Registry) AbortProvisioning(ctx context.Context, id string, reason *string) error {
	return r.call(ctx, id, lifecycle.AbortProvisioning, lifecycle.Args{Reason: reason})
}

// PeerReady records a MobMemberChild's peer handle.
func (r *Registry) PeerReady(ctx context.Context, id string, handle opsv1.PeerHandle) error {
	return r.call(ctx, id, lifecycle.PeerReady, lifecycle.Args{Peer: &handle})
}

// ReportProgress counts a progress report and keeps its message and percent.
// Reports are coalesced per operation: see WithProgressInterval.
func (r *Registry) ReportProgress(ctx context.Context, id string, p ProgressUpdate) error {
	if r.rt.progressInterval <= 0 {
		return r.call(ctx, id, lifecycle.ReportProgress, lifecycle.Args{Message: p.Message, Percent: p.Percent})
	}
	return r.reportProgress(ctx, id, p)
}

// CompleteOperation completes a Running or Retiring operation.
func (r *Registry) CompleteOperation(ctx context.Context, id string, result opsv1.OperationResult) error {
	return r.call(ctx, id, lifecycle.CompleteOperation, lifecycle.Args{Result: &result})
}

// FailOperation fails an active operation.
func (r *Registry) FailOperation(ctx context.Context, id, errMsg string) error {
	return r.call(ctx, id, lifecycle.FailOperation, lifecycle.Args{Error: errMsg})
}

// CancelOperation cancels an active operation.
func (r *Registry) CancelOperation(ctx context.Context, id string, reason *string) error {
	return r.call(ctx, id, lifecycle.CancelOperation, lifecycle.Args{Reason: reason})
}

// RequestRetire moves a Running operation to Retiring.
func (r *Registry) RequestRetire(ctx context.Context, id string) error {
	return r.call(ctx, id, lifecycle.RequestRetire, lifecycle.Args{})
}

// MarkRetired retires a Running or Retiring operation.
func (r *Registry) MarkRetired(ctx context.Context, id string) error {
	return r.call(ctx, id, lifecycle.MarkRetired, lifecycle.Args{})
}

// call reads the operation, applies the lifecycle call and writes the status
// with the read resourceVersion, retrying on conflict. The API server checks
// the transition again; a refusal comes back as the lifecycle error. The
// operation's pending progress reports go in the same write.
func (r *Registry) call(ctx context.Context, id string, c lifecycle.Call, a lifecycle.Args) error {
	return r.write(ctx, id, &step{c: c, a: a})
}

// step is one lifecycle call and its arguments.
type step struct {
	c lifecycle.Call
	a lifecycle.Args
}

// write makes the call st, if any, on the operation, together with its
// pending progress reports, in one status write. With st nil it writes the
// pending reports alone, and nothing when there are none.
func (r *Registry) write(ctx context.Context, id string, st *step) error {
	b := r.buffer(id)
	if b == nil && st == nil {
		return nil
	}
	if b != nil {
		b.wmu.Lock()
		defer b.wmu.Unlock()
	}
	pend := r.take(b)
	c := lifecycle.ReportProgress
	if st != nil {
		c = st.c
	}
	if st == nil && pend.n == 0 {
		// Another write took them first.
		r.settleNothing(id, b)
		return nil
	}
	started := r.rt.clock.Now()
	var final, applied bool
	op := r.recall(id)
	fromCache := op != nil
	err := retry.OnError(conflictBackoff, func(err error) bool { return errors.Is(err, errRetry) }, func() error {
		if op == nil {
			fresh, err := r.get(ctx, id)
			if err != nil {
				return err
			}
			op, fromCache = fresh, false
		}
		applied = pend.applyTo(op)
		if !applied && st == nil {
			if fromCache {
				op = nil
				return errRetry
			}
			return lifecycle.Check(op, lifecycle.ReportProgress)
		}
		if st != nil {
			if err := lifecycle.Apply(op, st.c, st.a, r.rt.clock.Now()); err != nil {
				if fromCache {
					// What we knew may be stale: decide on a fresh read.
					op = nil
					return errRetry
				}
				return err
			}
		}
		err := r.rt.c.Status().Update(ctx, op)
		switch {
		case err == nil:
			final = lifecycle.IsFinal(op.Status.Phase)
			r.remember(op)
			return nil
		case apierrors.IsNotFound(err):
			r.forget(id)
			return &lifecycle.NotFoundError{ID: id}
		case apierrors.IsConflict(err):
			op = nil
			return errRetry
		case apierrors.IsInvalid(err):
			// Someone else moved it between our read and write.
			r.forget(id)
			if fresh, gerr := r.get(ctx, id); gerr == nil {
				if cerr := lifecycle.Check(fresh, c); cerr != nil {
					return cerr
				}
			}
			return fmt.Errorf("%s on %s refused by the API server: %w", c.Action(), id, err)
		}
		return err
	})
	if errors.Is(err, errRetry) {
		err = fmt.Errorf("%s on %s: still conflicting after %d attempts", c.Action(), id, conflictBackoff.Steps)
	}
	// Reports the operation could not take (it is no longer Running or
	// Retiring) are dropped with its buffer.
	r.settle(id, b, pend, started, err, final || (err == nil && !applied))
	return err
}

// errRetry asks call to read the operation again and retry.
var errRetry = errors.New("stale operation: read again")

// get reads one of this session's operations from the API server.
func (r *Registry) get(ctx context.Context, id string) (*opsv1.Operation, error) {
	op := &opsv1.Operation{}
	err := r.rt.c.Get(ctx, types.NamespacedName{Namespace: r.rt.ns, Name: id}, op)
	if apierrors.IsNotFound(err) || (err == nil && !r.owns(op)) {
		return nil, &lifecycle.NotFoundError{ID: id}
	}
	return op, err
}

// owns: a registry sees only its session's registered operations.
func (r *Registry) owns(op *opsv1.Operation) bool {
	return op.Spec.SessionName == r.session && op.Status.Phase != opsv1.PhaseRejected
}

// TerminateOwner terminates every non-terminal operation of the session
// (spec.termination on the OpsSession) and returns once the controller has
// carried it out. Asking again, with any reason, returns at once when that
// is already done (the first reason stays: termination is write-once), as
// Meerkat's terminate_owner never fails.
func (r *Registry) TerminateOwner(ctx context.Context, reason string) error {
	// The operations' last progress reports first: the terminations are
	// the controller's writes, which cannot carry them.
	_ = r.Flush(ctx)
	s := &opsv1.OpsSession{}
	key := types.NamespacedName{Namespace: r.rt.ns, Name: r.session}
	if err := r.rt.c.Get(ctx, key, s); err != nil {
		return err
	}
	if s.Spec.Termination == nil {
		patch := client.MergeFrom(s.DeepCopy())
		s.Spec.Termination = &opsv1.Termination{Reason: reason}
		if err := r.rt.c.Patch(ctx, s, patch); err != nil {
			return err
		}
	}
	gen := s.Generation
	terminated := func(o client.Object) (bool, error) {
		c := meta.FindStatusCondition(o.(*opsv1.OpsSession).Status.Conditions, opsv1.ConditionTerminated)
		return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration >= gen, nil
	}
	if done, _ := terminated(s); done {
		return nil
	}
	return r.watchUntil(ctx, &opsv1.OpsSessionList{}, r.session, s.ResourceVersion, terminated)
}

// Snapshot returns the operation's state, or NotFound. The progress counts
// this Registry's reports not yet written.
func (r *Registry) Snapshot(ctx context.Context, id string) (*Snapshot, error) {
	if b := r.buffer(id); b != nil {
		// No write of it under way: what is read plus what is pending is exact.
		b.wmu.Lock()
		defer b.wmu.Unlock()
	}
	op, err := r.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.snapshot(op), nil
}

func (r *Registry) snapshot(op *opsv1.Operation) *Snapshot {
	st := &op.Status
	s := &Snapshot{
		ID: op.Name, Status: lifecycle.Normalize(st.Phase), Kind: op.Spec.Kind,
		DisplayName: op.Spec.DisplayName, PeerReady: st.PeerReady, PeerHandle: st.PeerHandle,
		ChildSessionID: op.Spec.ChildSessionID, TerminalOutcome: st.Outcome,
		CreatedAtMs: lifecycle.CreatedAt(op).UnixMilli(),
	}
	if p := st.Progress; p != nil {
		s.ProgressCount, s.ProgressMessage, s.ProgressPercent = p.Count, p.Message, p.Percent
	}
	if p := r.pendingFor(op.Name); p.n > 0 && lifecycle.Allowed(lifecycle.ReportProgress, st.Phase) {
		s.ProgressCount += p.n
		s.ProgressMessage, s.ProgressPercent = p.last.Message, p.last.Percent
	}
	if st.StartedAt != nil {
		s.StartedAtMs = ptr.To(st.StartedAt.UnixMilli())
	}
	if st.CompletedAt != nil {
		s.CompletedAtMs = ptr.To(st.CompletedAt.UnixMilli())
		s.ElapsedMs = ptr.To(*s.CompletedAtMs - s.CreatedAtMs)
	}
	r.mu.Lock()
	s.WatcherCount = r.watchers[op.Name]
	r.mu.Unlock()
	return s
}

// ListOperations returns every registered operation of the session, sorted
// by display name.
func (r *Registry) ListOperations(ctx context.Context) ([]Snapshot, error) {
	ops, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(ops))
	for _, op := range ops {
		out = append(out, *r.snapshot(op))
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		if c := strings.Compare(a.DisplayName, b.DisplayName); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (r *Registry) list(ctx context.Context) ([]*opsv1.Operation, error) {
	var list opsv1.OperationList
	if err := r.rt.c.List(ctx, &list, client.InNamespace(r.rt.ns),
		client.MatchingFields{"spec.sessionName": r.session}); err != nil {
		return nil, err
	}
	ops := make([]*opsv1.Operation, 0, len(list.Items))
	for i := range list.Items {
		if r.owns(&list.Items[i]) {
			ops = append(ops, &list.Items[i])
		}
	}
	return ops, nil
}

// CollectCompleted removes and returns every terminal operation, in
// completion order. Each operation goes to exactly one collector, however
// many race: the delete carries UID and resourceVersion preconditions, and
// only the collector whose delete succeeds reports it.
func (r *Registry) CollectCompleted(ctx context.Context) ([]OperationOutcome, error) {
	ops, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []OperationOutcome
	for _, op := range retention.Finished(ops) {
		if !lifecycle.IsTerminal(op.Status.Phase) {
			continue
		}
		won, err := r.collect(ctx, op)
		if err != nil {
			return out, err
		}
		if won {
			out = append(out, OperationOutcome{ID: op.Name, Outcome: *op.Status.Outcome})
		}
	}
	return out, nil
}

func (r *Registry) collect(ctx context.Context, op *opsv1.Operation) (bool, error) {
	for {
		err := r.rt.c.Delete(ctx, op, client.Preconditions{UID: &op.UID, ResourceVersion: &op.ResourceVersion})
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil // another collector, or retention, took it
		case !apierrors.IsConflict(err):
			return false, err
		}
		// Its conditions were refreshed since we listed; the outcome cannot
		// have changed. Read it again and retry.
		fresh := &opsv1.Operation{}
		if err := r.rt.c.Get(ctx, client.ObjectKeyFromObject(op), fresh); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if fresh.UID != op.UID {
			return false, nil
		}
		op = fresh
	}
}

// Watcher is a one-shot watcher of one operation's terminal outcome.
type Watcher struct {
	done    chan struct{}
	outcome Outcome
	err     error
}

// Wait returns the terminal outcome once the operation is terminal, NotFound
// if it was removed first, or ctx's error.
func (w *Watcher) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-w.done:
		return w.outcome, w.err
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// RegisterWatcher returns a watcher of the operation's terminal outcome. On
// an operation already terminal it resolves at once with the stored
// outcome; on an unknown or evicted one it gives NotFound. The watcher
// watches until ctx ends.
func (r *Registry) RegisterWatcher(ctx context.Context, id string) (*Watcher, error) {
	op, err := r.get(ctx, id)
	if err != nil {
		return nil, err
	}
	w := &Watcher{done: make(chan struct{})}
	if o := op.Status.Outcome; o != nil {
		w.outcome = *o
		close(w.done)
		return w, nil
	}
	r.mu.Lock()
	r.watchers[id]++
	r.mu.Unlock()
	go func() {
		final, err := r.waitFor(ctx, id, op.UID, func(o *opsv1.Operation) bool { return o.Status.Outcome != nil })
		if err == nil {
			w.outcome = *final.Status.Outcome
		}
		w.err = err
		r.mu.Lock()
		if r.watchers[id]--; r.watchers[id] <= 0 {
			delete(r.watchers, id)
		}
		r.mu.Unlock()
		close(w.done)
	}()
	return w, nil
}

// WaitAll waits for every operation and returns the outcomes in the order
// of ids. An unknown id gives NotFound and a repeated one
// DuplicateWaitOperation, before any waiting.
func (r *Registry) WaitAll(ctx context.Context, runID string, ids []string) (*WaitAllResult, error) {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return nil, &lifecycle.DuplicateWaitOperationError{ID: id}
		}
		seen[id] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchers := make([]*Watcher, len(ids))
	for i, id := range ids {
		w, err := r.RegisterWatcher(ctx, id)
		if err != nil {
			return nil, err
		}
		watchers[i] = w
	}
	res := &WaitAllResult{Satisfied: WaitSatisfied{
		RunID: runID, WaitRequestID: string(uuid.NewUUID()), OperationIDs: slices.Clone(ids),
	}}
	for i, w := range watchers {
		o, err := w.Wait(ctx)
		if err != nil {
			return nil, err
		}
		res.Outcomes = append(res.Outcomes, OperationOutcome{ID: ids[i], Outcome: o})
	}
	return res, nil
}

// waitFor waits, on the session's shared watch, until the operation with
// this UID satisfies done; a deletion first gives NotFound.
func (r *Registry) waitFor(ctx context.Context, id string, uid types.UID, done func(*opsv1.Operation) bool) (*opsv1.Operation, error) {
	sw, err := r.sessionWatch(ctx)
	if err != nil {
		return nil, err
	}
	w := sw.wait(id, uid, done)
	select {
	case res := <-w.ch:
		return res.op, res.err
	case <-ctx.Done():
		sw.cancel(id, w)
		return nil, ctx.Err()
	}
}

var errDeleted = errors.New("object deleted")

// watchUntil reads the named object and then watches it until cond holds,
// re-reading and re-watching when the watch ends. A deletion gives errDeleted.
func (r *Registry) watchUntil(ctx context.Context, list client.ObjectList, name, rv string, cond func(client.Object) (bool, error)) error {
	for {
		if rv == "" {
			obj, err := r.fetch(ctx, list, name)
			if err != nil {
				return err
			}
			if ok, err := cond(obj); ok || err != nil {
				return err
			}
			rv = obj.GetResourceVersion()
		}
		w, err := r.rt.c.Watch(ctx, list, client.InNamespace(r.rt.ns),
			client.MatchingFields{"metadata.name": name},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rv = "" // e.g. too old a resourceVersion: read again
			continue
		}
		done, err := r.drain(ctx, w, cond)
		w.Stop()
		if done || err != nil {
			return err
		}
		rv = ""
	}
}

func (r *Registry) drain(ctx context.Context, w watch.Interface, cond func(client.Object) (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return false, errDeleted
			case watch.Added, watch.Modified:
				obj, ok := ev.Object.(client.Object)
				if !ok {
					continue
				}
				if done, err := cond(obj); done || err != nil {
					return done, err
				}
			case watch.Error:
				return false, nil
			}
		}
	}
}

func (r *Registry) fetch(ctx context.Context, list client.ObjectList, name string) (client.Object, error) {
	var obj client.Object
	switch list.(type) {
	case *opsv1.OperationList:
		obj = &opsv1.Operation{}
	default:
		obj = &opsv1.OpsSession{}
	}
	if err := r.rt.c.Get(ctx, types.NamespacedName{Namespace: r.rt.ns, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errDeleted
		}
		return nil, err
	}
	return obj, nil
}

// Namespace is the registry's namespace.
func (r *Registry) Namespace() string { return r.rt.ns }
