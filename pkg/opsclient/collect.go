package opsclient

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

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
