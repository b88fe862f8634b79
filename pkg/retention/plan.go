// Package retention decides which finished operations a session evicts: it
// keeps them in completion order and deletes the oldest while more than
// maxCompleted remain. It is pure.
package retention

import (
	"cmp"
	"slices"
	"time"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// DefaultMaxCompleted is maxCompleted when a session leaves it unset.
const DefaultMaxCompleted = 256

// Evict returns the finished operations to delete, oldest first. Only
// operations whose final status is already stored are candidates, so an
// outcome is always written, and visible to watchers, before its eviction.
// Declared operations are never candidates and do not count.
func Evict(ops []*opsv1.Operation, maxCompleted *int32) []*opsv1.Operation {
	keep := DefaultMaxCompleted
	if maxCompleted != nil {
		keep = int(*maxCompleted)
	}
	finished := slices.DeleteFunc(Finished(ops), Declared)
	if len(finished) <= keep {
		return nil
	}
	return finished[:len(finished)-keep]
}

// Finished returns the final operations in completion order: completedAt
// (registration time for a rejection), then name.
func Finished(ops []*opsv1.Operation) []*opsv1.Operation {
	var out []*opsv1.Operation
	for _, op := range ops {
		if lifecycle.IsFinal(op.Status.Phase) && op.DeletionTimestamp.IsZero() {
			out = append(out, op)
		}
	}
	slices.SortStableFunc(out, func(a, b *opsv1.Operation) int {
		if c := finishedAt(a).Compare(finishedAt(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

func finishedAt(op *opsv1.Operation) time.Time {
	if op.Status.CompletedAt != nil {
		return op.Status.CompletedAt.Time
	}
	return lifecycle.CreatedAt(op).Time
}

// DeclaredMarks are the annotations and labels that say an operation is
// declared in Git and kept there by a GitOps tool: Argo CD's tracking
// annotation, Flux's kustomize-controller label, or ours for any other tool.
// Evicting such an operation would only make the tool re-create it, and the
// session run it again; its lifetime is Git's, so retention leaves it be.
var DeclaredMarks = []string{
	opsv1.AnnotationDeclared,
	"argocd.argoproj.io/tracking-id",
	"kustomize.toolkit.fluxcd.io/name",
}

// Declared reports whether op carries one of DeclaredMarks, as an
// annotation or a label (ours must say "true").
func Declared(op *opsv1.Operation) bool {
	for _, k := range DeclaredMarks {
		for _, m := range []map[string]string{op.Annotations, op.Labels} {
			if v, ok := m[k]; ok && (k != opsv1.AnnotationDeclared || v == "true") {
				return true
			}
		}
	}
	return false
}
