package opsclient

import (
	"context"
	"slices"
	"strings"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

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
