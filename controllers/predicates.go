package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// unfinished passes the events of operations that are not final, and of
// final ones whose conditions are stale (CachedConditionsStale). Nothing
// else is left for the operation controller to do on a final one, and at
// start-up this keeps tens of thousands of retained operations out of its
// queue.
func unfinished() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		op, ok := o.(*opsv1.Operation)
		return !ok || !lifecycle.IsFinal(op.Status.Phase) || op.Annotations[CachedConditionsStale] != ""
	})
}

// operationPhaseChanged passes the Operation events a session cares about:
// creation, deletion, and a phase change. Progress reports do not wake the
// session controller.
func operationPhaseChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*opsv1.Operation)
			n, ok2 := e.ObjectNew.(*opsv1.Operation)
			if !ok1 || !ok2 {
				return true
			}
			return o.Status.Phase != n.Status.Phase || o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
		},
	}
}

// deletionPredicate passes updates that start an object's deletion.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
	}
}

// sessionCreatedOrSpecChanged passes a session's creation and spec changes:
// what can unblock or re-time its operations.
func sessionCreatedOrSpecChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration()
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}
