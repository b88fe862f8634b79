// Package lifecycle is the Meerkat ops lifecycle as pure decisions: which call
// is allowed from which phase, what it does to an Operation's status, the
// errors it gives, and the conditions each phase maps to. It imports no
// client; the controller and the agents' client follow the one table here,
// and the CRD's CEL rules are generated from it: hack/celgen (run by make
// manifests) writes the rules of api/v1alpha1/operation_types.go that name
// phases from Successors, Terminal and Final, their refusals starting with
// the text of ErrInvalidTransition.
package lifecycle

import (
	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// Call is one lifecycle call. Agents make most of them through the client;
// the controller makes Admit, Reject and Terminate, and carries out the
// users' Cancel, RequestRetire and AbortProvisioning requests.
type Call int

const (
	ProvisioningSucceeded Call = iota
	ProvisioningFailed
	AbortProvisioning
	PeerReady
	ReportProgress
	CompleteOperation
	FailOperation
	CancelOperation
	RequestRetire
	MarkRetired
	TerminateOwner
	Admit
	Reject
)

// Calls lists every call, for exhaustive tests.
var Calls = []Call{
	ProvisioningSucceeded, ProvisioningFailed, AbortProvisioning, PeerReady, ReportProgress,
	CompleteOperation, FailOperation, CancelOperation, RequestRetire, MarkRetired,
	TerminateOwner, Admit, Reject,
}

// Phases lists every phase an Operation can have, for exhaustive tests.
var Phases = []opsv1.OperationPhase{
	opsv1.PhasePending, opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseRetiring,
	opsv1.PhaseCompleted, opsv1.PhaseFailed, opsv1.PhaseAborted, opsv1.PhaseCancelled,
	opsv1.PhaseRetired, opsv1.PhaseTerminated, opsv1.PhaseRejected,
}

type rule struct {
	action string
	from   []opsv1.OperationPhase
	// to is the phase the call leads to; empty means the phase stays.
	to opsv1.OperationPhase
}

var (
	active = []opsv1.OperationPhase{opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseRetiring}
	live   = []opsv1.OperationPhase{opsv1.PhaseRunning, opsv1.PhaseRetiring}
	// Pending is our own state before admission; a queued operation can be
	// cancelled or terminated without ever being admitted.
	pendingOrActive = []opsv1.OperationPhase{opsv1.PhasePending, opsv1.PhaseProvisioning, opsv1.PhaseRunning, opsv1.PhaseRetiring}
	provisioning    = []opsv1.OperationPhase{opsv1.PhaseProvisioning}
)

var rules = map[Call]rule{
	ProvisioningSucceeded: {"provisioning_succeeded", provisioning, opsv1.PhaseRunning},
	ProvisioningFailed:    {"fail_operation", provisioning, opsv1.PhaseFailed},
	AbortProvisioning:     {"abort_provisioning", provisioning, opsv1.PhaseAborted},
	PeerReady:             {"peer_ready", live, ""},
	ReportProgress:        {"report_progress", live, ""},
	CompleteOperation:     {"complete_operation", live, opsv1.PhaseCompleted},
	FailOperation:         {"fail_operation", active, opsv1.PhaseFailed},
	CancelOperation:       {"cancel_operation", pendingOrActive, opsv1.PhaseCancelled},
	RequestRetire:         {"request_retire", []opsv1.OperationPhase{opsv1.PhaseRunning}, opsv1.PhaseRetiring},
	MarkRetired:           {"mark_retired", live, opsv1.PhaseRetired},
	TerminateOwner:        {"terminate_owner", pendingOrActive, opsv1.PhaseTerminated},
	Admit:                 {"admit", []opsv1.OperationPhase{opsv1.PhasePending}, opsv1.PhaseProvisioning},
	Reject:                {"reject", []opsv1.OperationPhase{opsv1.PhasePending}, opsv1.PhaseRejected},
}

// Action is the call's action string, as InvalidTransition reports it.
func (c Call) Action() string { return rules[c].action }

func (c Call) String() string { return c.Action() }

// Allowed reports whether the call may be made from the phase.
func Allowed(c Call, from opsv1.OperationPhase) bool {
	for _, p := range rules[c].from {
		if p == Normalize(from) {
			return true
		}
	}
	return false
}

// Target is the phase the call leads to from an allowed phase.
func Target(c Call, from opsv1.OperationPhase) opsv1.OperationPhase {
	if to := rules[c].to; to != "" {
		return to
	}
	return Normalize(from)
}

// PhaseChangeAllowed reports whether a status write may move an Operation from
// one phase to another: some call leads there, or the phase stays (progress,
// peer-ready, conditions). This is the table the CRD's CEL rules encode
// (generated from Successors by hack/celgen); a test in test/envtest checks
// that the API server agrees pair by pair.
func PhaseChangeAllowed(from, to opsv1.OperationPhase) bool {
	from, to = Normalize(from), Normalize(to)
	if from == to {
		return true
	}
	for _, c := range Calls {
		if Allowed(c, from) && Target(c, from) == to {
			return true
		}
	}
	return false
}

// Normalize maps the unset phase to Pending.
func Normalize(p opsv1.OperationPhase) opsv1.OperationPhase {
	if p == "" {
		return opsv1.PhasePending
	}
	return p
}

// IsTerminal reports whether the phase is one of the six terminal lifecycle
// states, the ones that carry an outcome.
func IsTerminal(p opsv1.OperationPhase) bool {
	switch p {
	case opsv1.PhaseCompleted, opsv1.PhaseFailed, opsv1.PhaseAborted,
		opsv1.PhaseCancelled, opsv1.PhaseRetired, opsv1.PhaseTerminated:
		return true
	}
	return false
}

// IsFinal reports whether nothing can change the phase any more: terminal, or Rejected.
func IsFinal(p opsv1.OperationPhase) bool {
	return IsTerminal(p) || p == opsv1.PhaseRejected
}

// Successors lists the phases a status write may move an Operation from the
// phase to (PhaseChangeAllowed), the phase itself left out: first the ones
// that are not terminal, then the terminal ones, each group in Phases order.
// A final phase has none. hack/celgen writes these lists into the CRD's CEL
// rule on status.phase, so the order is the one its lists read in.
func Successors(from opsv1.OperationPhase) []opsv1.OperationPhase {
	from = Normalize(from)
	var open, terminal []opsv1.OperationPhase
	for _, to := range Phases {
		if to == from || !PhaseChangeAllowed(from, to) {
			continue
		}
		if IsTerminal(to) {
			terminal = append(terminal, to)
		} else {
			open = append(open, to)
		}
	}
	return append(open, terminal...)
}

// Terminal lists the terminal phases (IsTerminal) in Phases order.
func Terminal() []opsv1.OperationPhase { return filterPhases(IsTerminal) }

// Final lists the final phases (IsFinal) in Phases order.
func Final() []opsv1.OperationPhase { return filterPhases(IsFinal) }

func filterPhases(keep func(opsv1.OperationPhase) bool) []opsv1.OperationPhase {
	var out []opsv1.OperationPhase
	for _, p := range Phases {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// IsActive reports whether the phase counts against maxConcurrent.
func IsActive(p opsv1.OperationPhase) bool {
	return p == opsv1.PhaseProvisioning || p == opsv1.PhaseRunning || p == opsv1.PhaseRetiring
}
