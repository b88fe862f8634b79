package retention_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

var base = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

type opOption func(*opsv1.Operation)

// completedAt sets status.completedAt to base + d.
func completedAt(d time.Duration) opOption {
	return func(op *opsv1.Operation) {
		m := metav1.NewMicroTime(base.Add(d))
		op.Status.CompletedAt = &m
	}
}

// createdAt registers op at base + d, as a client and the API server would:
// the created-at annotation at microseconds, creationTimestamp at its second.
func createdAt(d time.Duration) opOption {
	return func(op *opsv1.Operation) {
		op.Annotations[opsv1.AnnotationCreatedAt] = base.Add(d).Format(time.RFC3339Nano)
		op.CreationTimestamp = metav1.NewTime(base.Add(d).Truncate(time.Second))
	}
}

func beingDeleted() opOption {
	return func(op *opsv1.Operation) {
		ts := metav1.NewTime(base.Add(time.Hour))
		op.DeletionTimestamp = &ts
		op.Finalizers = []string{"example.com/hold"}
	}
}

func newOp(name string, phase opsv1.OperationPhase, opts ...opOption) *opsv1.Operation {
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(base.Add(-time.Hour)),
			Annotations:       map[string]string{},
		},
		Spec:   opsv1.OperationSpec{SessionName: "sess", Kind: opsv1.BackgroundToolOp},
		Status: opsv1.OperationStatus{Phase: phase},
	}
	for _, o := range opts {
		o(op)
	}
	return op
}

// done builds a terminal operation that completed at base + d seconds.
func done(name string, phase opsv1.OperationPhase, d int, opts ...opOption) *opsv1.Operation {
	return newOp(name, phase, append([]opOption{completedAt(time.Duration(d) * time.Second)}, opts...)...)
}

// names returns the operations' names, nil for none (as the cases want).
func names(ops []*opsv1.Operation) []string {
	if len(ops) == 0 {
		return nil
	}
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Name)
	}
	return out
}

func i32(n int32) *int32 { return &n }

func TestEvict(t *testing.T) {
	cases := map[string]struct {
		ops          []*opsv1.Operation
		maxCompleted *int32
		want         []string
	}{
		"keeps the newest maxCompleted, evicting the oldest first": {
			ops: []*opsv1.Operation{
				done("d", opsv1.PhaseFailed, 4), done("a", opsv1.PhaseCompleted, 1), done("e", opsv1.PhaseRetired, 5),
				done("c", opsv1.PhaseCancelled, 3), done("b", opsv1.PhaseAborted, 2),
			},
			maxCompleted: i32(2),
			want:         []string{"a", "b", "c"},
		},
		"equal completion times are ordered by name": {
			ops: []*opsv1.Operation{
				done("z", opsv1.PhaseCompleted, 1), done("m", opsv1.PhaseCompleted, 1),
				done("a", opsv1.PhaseCompleted, 1), done("late", opsv1.PhaseCompleted, 2),
			},
			maxCompleted: i32(2),
			want:         []string{"a", "m"},
		},
		"completedAt is compared at microsecond precision": {
			ops: []*opsv1.Operation{
				newOp("a", opsv1.PhaseCompleted, completedAt(time.Second+2*time.Microsecond)),
				newOp("b", opsv1.PhaseCompleted, completedAt(time.Second+1*time.Microsecond)),
			},
			maxCompleted: i32(1),
			want:         []string{"b"},
		},
		"declared operations (Argo CD, Flux, ours) are never evicted and do not count": {
			ops: []*opsv1.Operation{
				done("argo", opsv1.PhaseCompleted, 1, func(op *opsv1.Operation) {
					op.Annotations["argocd.argoproj.io/tracking-id"] = "app:ops.meerkat.dev/Operation:ns/argo"
				}),
				done("flux", opsv1.PhaseCompleted, 2, func(op *opsv1.Operation) {
					op.Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "agents"}
				}),
				done("ours", opsv1.PhaseCompleted, 3, func(op *opsv1.Operation) { op.Annotations[opsv1.AnnotationDeclared] = "true" }),
				done("not-ours", opsv1.PhaseCompleted, 4, func(op *opsv1.Operation) { op.Annotations[opsv1.AnnotationDeclared] = "false" }),
				done("plain", opsv1.PhaseCompleted, 5),
			},
			maxCompleted: i32(1),
			want:         []string{"not-ours"},
		},
		"at the limit nothing is evicted": {
			ops:          []*opsv1.Operation{done("a", opsv1.PhaseCompleted, 1), done("b", opsv1.PhaseCompleted, 2)},
			maxCompleted: i32(2),
		},
		"maxCompleted 0 evicts every finished operation, oldest first": {
			ops: []*opsv1.Operation{
				done("b", opsv1.PhaseTerminated, 2), newOp("r", opsv1.PhaseRunning), done("a", opsv1.PhaseCompleted, 1),
			},
			maxCompleted: i32(0),
			want:         []string{"a", "b"},
		},
		"non-final operations are never evicted": {
			ops: []*opsv1.Operation{
				newOp("u", ""), newOp("p", opsv1.PhasePending), newOp("pv", opsv1.PhaseProvisioning),
				newOp("r", opsv1.PhaseRunning), newOp("rt", opsv1.PhaseRetiring),
			},
			maxCompleted: i32(0),
		},
		"every terminal phase and Rejected count as finished": {
			ops: []*opsv1.Operation{
				done("completed", opsv1.PhaseCompleted, 1), done("failed", opsv1.PhaseFailed, 2),
				done("aborted", opsv1.PhaseAborted, 3), done("cancelled", opsv1.PhaseCancelled, 4),
				done("retired", opsv1.PhaseRetired, 5), done("terminated", opsv1.PhaseTerminated, 6),
				newOp("rejected", opsv1.PhaseRejected, createdAt(7*time.Second)),
				newOp("running", opsv1.PhaseRunning),
			},
			maxCompleted: i32(1),
			want:         []string{"completed", "failed", "aborted", "cancelled", "retired", "terminated"},
		},
		"a rejection is ordered by its registration time": {
			ops: []*opsv1.Operation{
				done("c1", opsv1.PhaseCompleted, 10),
				newOp("rj", opsv1.PhaseRejected, createdAt(5*time.Second)),
				done("c0", opsv1.PhaseCompleted, 1),
			},
			maxCompleted: i32(1),
			want:         []string{"c0", "rj"},
		},
		"a rejection without the annotation is ordered by creationTimestamp": {
			ops: []*opsv1.Operation{
				done("c0", opsv1.PhaseCompleted, 1),
				newOp("rj", opsv1.PhaseRejected), // created an hour before base
			},
			maxCompleted: i32(1),
			want:         []string{"rj"},
		},
		"operations already being deleted are neither evicted nor counted": {
			ops: []*opsv1.Operation{
				done("a", opsv1.PhaseCompleted, 1, beingDeleted()),
				done("b", opsv1.PhaseCompleted, 2),
				done("c", opsv1.PhaseCompleted, 3),
				newOp("rj", opsv1.PhaseRejected, createdAt(0), beingDeleted()),
			},
			maxCompleted: i32(1),
			want:         []string{"b"},
		},
		"unset maxCompleted keeps 256": {
			ops:  manyDone(256),
			want: nil,
		},
		"unset maxCompleted evicts beyond 256": {
			ops:  manyDone(259),
			want: []string{"op-000", "op-001", "op-002"},
		},
		"no operations": {maxCompleted: i32(0)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := make([]*opsv1.Operation, len(tc.ops))
			for i, op := range tc.ops {
				before[i] = op.DeepCopy()
			}
			got := names(retention.Evict(tc.ops, tc.maxCompleted))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("evicted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.ops, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Evict changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestDefaultMaxCompleted(t *testing.T) {
	if retention.DefaultMaxCompleted != 256 {
		t.Errorf("DefaultMaxCompleted = %d, want 256 as docs/lifecycle.md says", retention.DefaultMaxCompleted)
	}
}

func TestFinishedOrder(t *testing.T) {
	ops := []*opsv1.Operation{
		done("b", opsv1.PhaseCompleted, 2),
		newOp("running", opsv1.PhaseRunning),
		newOp("rj", opsv1.PhaseRejected, createdAt(1500*time.Millisecond)),
		done("a", opsv1.PhaseFailed, 2),
		done("first", opsv1.PhaseTerminated, 1),
		done("gone", opsv1.PhaseCompleted, 0, beingDeleted()),
	}
	want := []string{"first", "rj", "a", "b"}
	if diff := cmp.Diff(want, names(retention.Finished(ops))); diff != "" {
		t.Errorf("Finished order (-want +got):\n%s", diff)
	}
}

// manyDone builds n completed operations, op-000 oldest.
func manyDone(n int) []*opsv1.Operation {
	ops := make([]*opsv1.Operation, 0, n)
	for i := n - 1; i >= 0; i-- { // newest first, so Evict has to sort
		ops = append(ops, newOp(fmt.Sprintf("op-%03d", i), opsv1.PhaseCompleted, completedAt(time.Duration(i)*time.Millisecond)))
	}
	return ops
}
