package admission

import (
	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// A rejection for MaxConcurrentExceeded is final, so it must be as
// well-founded as an admission. An admission is fenced by the ledger's
// optimistic lock; a rejection cannot be: operations finishing do not change
// the session object, and the ledger may still hold an operation that has
// already finished. So the ledger may only ever hold a slot back, and a
// rejection stands only when a read from the API server, made after the plan
// (so after every operation it rejects was created) and before the
// rejection is written, shows at least limit operations active. The session
// was then full at a moment between the operation's creation and its
// rejection, whatever happens while the rejections are written.

// RejectsOverLimit reports whether p rejects any operation for
// MaxConcurrentExceeded: the only plans that need a live count.
func RejectsOverLimit(p Plan) bool {
	for _, r := range p.Reject {
		if r.Rejection.Reason == opsv1.RejectionMaxConcurrentExceeded {
			return true
		}
	}
	return false
}

// Active counts the operations that hold a slot by their phase
// (Provisioning, Running, Retiring), as opposed to the ledger's count.
func Active(ops []*opsv1.Operation) int {
	n := 0
	for _, op := range ops {
		if lifecycle.IsActive(lifecycle.Normalize(op.Status.Phase)) {
			n++
		}
	}
	return n
}

// Fence keeps p's MaxConcurrentExceeded rejections only when active, the
// number of operations a view shows active, is at least the limit, and then
// at most max of them (oldest first; max 0 means all), so that they are
// written while the view is fresh. It returns how many it withheld: those
// operations stay Pending for a later pass. Other rejections
// (OwnerTerminated) always stand.
func Fence(p Plan, active, max int) (fenced Plan, withheld int) {
	kept, overLimit := make([]Rejected, 0, len(p.Reject)), 0
	for _, r := range p.Reject {
		if r.Rejection.Reason == opsv1.RejectionMaxConcurrentExceeded {
			if active < p.Limit || (max > 0 && overLimit >= max) {
				withheld++
				continue
			}
			overLimit++
		}
		kept = append(kept, r)
	}
	p.Reject = kept
	p.Finished -= withheld
	return p, withheld
}
