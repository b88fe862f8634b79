// Package admission decides, over one consistent view of a session and its
// operations, which Pending operations are admitted, rejected, queued or
// terminated, and what the session's admission ledger becomes. It is pure:
// the OpsSession controller observes, calls Plan, and writes the result.
package admission

import (
	"cmp"
	"slices"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Plan is what the controller writes for one session, in this order: the
// ledger (with optimistic locking) first, then the operations.
type Plan struct {
	// Ledger is the admission ledger to store; LedgerChanged says it differs
	// from the stored one.
	Ledger        []opsv1.LedgerEntry
	LedgerChanged bool
	// Admit are Pending operations to move to Provisioning (Admit). Some may
	// already be in the stored ledger: a previous admission whose operation
	// write did not happen.
	Admit []*opsv1.Operation
	// Reject are Pending operations to refuse, each with its rejection.
	Reject []Rejected
	// Queue are Pending operations that wait for a slot.
	Queue []*opsv1.Operation
	// Terminate are non-final operations to move to Terminated.
	Terminate []*opsv1.Operation
	// Limit is maxConcurrent (-1 when unlimited) and Active the active count
	// after the plan.
	Limit, Active int
	// Queued and Finished count Pending and final operations after the plan.
	Queued, Finished int
}

// Rejected is one refused operation.
type Rejected struct {
	Op        *opsv1.Operation
	Rejection opsv1.Rejection
}

// Input is one consistent view of a session.
type Input struct {
	Session *opsv1.OpsSession
	// Ops are the session's operations. A ledger entry with no operation here
	// is kept (counted as active) unless Gone lists it: only a live read from
	// the API server may say an admitted operation no longer exists, since a
	// cache may simply not have seen it yet.
	Ops []*opsv1.Operation
	// Gone holds ledger names confirmed absent (or re-created with another UID).
	Gone map[string]bool
	// TerminationDone says the session's termination was already carried out,
	// so Pending operations seen now are new and get rejected.
	TerminationDone bool
}

// Decide computes the plan.
func Decide(in Input) Plan {
	s := in.Session
	byName := make(map[string]*opsv1.Operation, len(in.Ops))
	for _, op := range in.Ops {
		byName[op.Name] = op
	}
	p := Plan{Limit: -1}
	if s.Spec.MaxConcurrent != nil {
		p.Limit = int(*s.Spec.MaxConcurrent)
	}
	terminating := s.Spec.Termination != nil || !s.DeletionTimestamp.IsZero()

	// The ledger keeps every admitted operation not yet seen final.
	ledger := make([]opsv1.LedgerEntry, 0, len(s.Status.Admitted))
	inLedger := map[string]bool{}
	for _, e := range s.Status.Admitted {
		op := byName[e.Name]
		switch {
		case in.Gone[e.Name]:
			continue // confirmed live: deleted, or registered again under a new UID
		case op != nil && string(op.UID) == e.UID && lifecycle.IsFinal(op.Status.Phase):
			continue
		}
		ledger = append(ledger, e)
		inLedger[e.Name] = true
	}
	// Operations active without a ledger entry were admitted while the
	// session had no limit; they count all the same.
	var pending []*opsv1.Operation
	for _, op := range in.Ops {
		phase := lifecycle.Normalize(op.Status.Phase)
		switch {
		case lifecycle.IsActive(phase) && !inLedger[op.Name]:
			ledger = append(ledger, entry(op))
			inLedger[op.Name] = true
		case phase == opsv1.PhasePending && inLedger[op.Name] && !terminating:
			p.Admit = append(p.Admit, op) // admitted in the ledger, not yet on the operation
		case phase == opsv1.PhasePending && !inLedger[op.Name]:
			pending = append(pending, op)
		}
	}
	p.Active = len(ledger)

	if terminating {
		for _, op := range in.Ops {
			phase := lifecycle.Normalize(op.Status.Phase)
			switch {
			case phase == opsv1.PhasePending && in.TerminationDone && !inLedger[op.Name]:
				p.Reject = append(p.Reject, Rejected{op, opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}})
			case !lifecycle.IsFinal(phase):
				p.Terminate = append(p.Terminate, op)
			}
		}
		p.Ledger, p.LedgerChanged = finish(s, ledger, p.Limit)
		p.Active, p.Queued = 0, 0
		p.Finished = countFinal(in.Ops) + len(p.Terminate) + len(p.Reject)
		return p
	}

	SortFIFO(pending)
	for _, op := range pending {
		switch {
		case p.Limit < 0 || p.Active < p.Limit:
			p.Admit = append(p.Admit, op)
			ledger = append(ledger, entry(op))
			p.Active++
		case s.Spec.AdmissionPolicy == opsv1.AdmissionQueue:
			p.Queue = append(p.Queue, op)
		default:
			limit, act := int32(p.Limit), int32(p.Active)
			p.Reject = append(p.Reject, Rejected{op, opsv1.Rejection{
				Reason: opsv1.RejectionMaxConcurrentExceeded, Limit: &limit, Active: &act,
			}})
		}
	}
	p.Ledger, p.LedgerChanged = finish(s, ledger, p.Limit)
	p.Queued = len(p.Queue)
	p.Finished = countFinal(in.Ops) + len(p.Reject)
	return p
}

// finish drops the ledger when the session has no limit: nothing to fence.
// A nil and an empty ledger are the same (slices.Equal compares lengths
// and elements only), so neither counts as a change.
func finish(s *opsv1.OpsSession, ledger []opsv1.LedgerEntry, limit int) ([]opsv1.LedgerEntry, bool) {
	if limit < 0 {
		ledger = nil
	}
	slices.SortFunc(ledger, func(a, b opsv1.LedgerEntry) int { return cmp.Compare(a.Name, b.Name) })
	return ledger, !slices.Equal(ledger, s.Status.Admitted)
}

func entry(op *opsv1.Operation) opsv1.LedgerEntry {
	return opsv1.LedgerEntry{Name: op.Name, UID: string(op.UID)}
}

func countFinal(ops []*opsv1.Operation) int {
	n := 0
	for _, op := range ops {
		if lifecycle.IsFinal(op.Status.Phase) {
			n++
		}
	}
	return n
}

// SortFIFO orders operations by registration time (lifecycle.RegisteredAt,
// which no status write can move), then name.
func SortFIFO(ops []*opsv1.Operation) {
	slices.SortStableFunc(ops, func(a, b *opsv1.Operation) int {
		ta, tb := lifecycle.RegisteredAt(a), lifecycle.RegisteredAt(b)
		if c := ta.Compare(tb.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}
