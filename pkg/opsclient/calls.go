package opsclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// conflictBackoff retries optimistic-lock conflicts quickly and for long
// enough that a busy controller writing the same object cannot starve us.
var conflictBackoff = wait.Backoff{Steps: 12, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Cap: time.Second}

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
