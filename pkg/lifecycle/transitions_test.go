package lifecycle_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Short aliases keep the hand-written tables below readable.
const (
	pending      = opsv1.PhasePending
	provisioning = opsv1.PhaseProvisioning
	running      = opsv1.PhaseRunning
	retiring     = opsv1.PhaseRetiring
	completed    = opsv1.PhaseCompleted
	failed       = opsv1.PhaseFailed
	aborted      = opsv1.PhaseAborted
	cancelled    = opsv1.PhaseCancelled
	retired      = opsv1.PhaseRetired
	terminated   = opsv1.PhaseTerminated
	rejected     = opsv1.PhaseRejected
)

// allPhases is written out independently of lifecycle.Phases.
var allPhases = []opsv1.OperationPhase{
	pending, provisioning, running, retiring,
	completed, failed, aborted, cancelled, retired, terminated,
	rejected,
}

// wantTransitions is the call x phase table of docs/lifecycle.md plus the project's
// extensions (Pending, Admit, Reject, provisioning_failed), written by hand:
// for each call, the phases it is allowed from and the phase it leads to. A
// phase missing from a call's map means the call is not allowed from it.
var wantTransitions = map[lifecycle.Call]map[opsv1.OperationPhase]opsv1.OperationPhase{
	lifecycle.ProvisioningSucceeded: {provisioning: running},
	lifecycle.ProvisioningFailed:    {provisioning: failed},
	lifecycle.AbortProvisioning:     {provisioning: aborted},
	lifecycle.PeerReady:             {running: running, retiring: retiring},
	lifecycle.ReportProgress:        {running: running, retiring: retiring},
	lifecycle.CompleteOperation:     {running: completed, retiring: completed},
	lifecycle.FailOperation:         {provisioning: failed, running: failed, retiring: failed},
	lifecycle.CancelOperation:       {pending: cancelled, provisioning: cancelled, running: cancelled, retiring: cancelled},
	lifecycle.RequestRetire:         {running: retiring},
	lifecycle.MarkRetired:           {running: retired, retiring: retired},
	lifecycle.TerminateOwner:        {pending: terminated, provisioning: terminated, running: terminated, retiring: terminated},
	lifecycle.Admit:                 {pending: provisioning},
	lifecycle.Reject:                {pending: rejected},
}

// wantActions are the action strings InvalidTransition reports.
var wantActions = map[lifecycle.Call]string{
	lifecycle.ProvisioningSucceeded: "provisioning_succeeded",
	lifecycle.ProvisioningFailed:    "fail_operation",
	lifecycle.AbortProvisioning:     "abort_provisioning",
	lifecycle.PeerReady:             "peer_ready",
	lifecycle.ReportProgress:        "report_progress",
	lifecycle.CompleteOperation:     "complete_operation",
	lifecycle.FailOperation:         "fail_operation",
	lifecycle.CancelOperation:       "cancel_operation",
	lifecycle.RequestRetire:         "request_retire",
	lifecycle.MarkRetired:           "mark_retired",
	lifecycle.TerminateOwner:        "terminate_owner",
	lifecycle.Admit:                 "admit",
	lifecycle.Reject:                "reject",
}

// wantPhaseChanges is the (from -> to) table the CRD's CEL rules encode, one
// line per from-phase, written from operation_types.go's XValidation rules.
var wantPhaseChanges = map[opsv1.OperationPhase][]opsv1.OperationPhase{
	pending:      {pending, provisioning, rejected, cancelled, terminated},
	provisioning: {provisioning, running, failed, aborted, cancelled, terminated},
	running:      {running, retiring, completed, failed, cancelled, retired, terminated},
	retiring:     {retiring, completed, failed, cancelled, retired, terminated},
	completed:    {completed},
	failed:       {failed},
	aborted:      {aborted},
	cancelled:    {cancelled},
	retired:      {retired},
	terminated:   {terminated},
	rejected:     {rejected},
}

var (
	wantTerminal = map[opsv1.OperationPhase]bool{
		completed: true, failed: true, aborted: true, cancelled: true, retired: true, terminated: true,
	}
	wantFinal = map[opsv1.OperationPhase]bool{
		completed: true, failed: true, aborted: true, cancelled: true, retired: true, terminated: true,
		rejected: true,
	}
	wantActive = map[opsv1.OperationPhase]bool{provisioning: true, running: true, retiring: true}
)

// phasesWithUnset is every phase plus the unset one, which means Pending.
var phasesWithUnset = append(slices.Clone(allPhases), "")

func norm(p opsv1.OperationPhase) opsv1.OperationPhase {
	if p == "" {
		return pending
	}
	return p
}

func phaseName(p opsv1.OperationPhase) string {
	if p == "" {
		return "Unset"
	}
	return string(p)
}

func TestCallsListsEveryCallOnce(t *testing.T) {
	if got, want := len(lifecycle.Calls), len(wantTransitions); got != want {
		t.Fatalf("len(lifecycle.Calls) = %d, want %d", got, want)
	}
	seen := map[lifecycle.Call]bool{}
	for _, c := range lifecycle.Calls {
		if seen[c] {
			t.Errorf("call %v listed twice", c)
		}
		seen[c] = true
		if _, ok := wantTransitions[c]; !ok {
			t.Errorf("call %v (%d) is not in the expected table", c, int(c))
		}
	}
}

func TestPhasesListsEveryPhaseOnce(t *testing.T) {
	got := slices.Clone(lifecycle.Phases)
	want := slices.Clone(allPhases)
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lifecycle.Phases mismatch (-want +got):\n%s", diff)
	}
}

func TestActionAndString(t *testing.T) {
	for _, c := range lifecycle.Calls {
		want, ok := wantActions[c]
		if !ok {
			t.Errorf("no expected action for call %d", int(c))
			continue
		}
		if got := c.Action(); got != want {
			t.Errorf("Call(%d).Action() = %q, want %q", int(c), got, want)
		}
		if got := c.String(); got != want {
			t.Errorf("Call(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

func TestAllowedAndTarget(t *testing.T) {
	for _, c := range lifecycle.Calls {
		for _, from := range phasesWithUnset {
			t.Run(fmt.Sprintf("%s/%s", c, phaseName(from)), func(t *testing.T) {
				wantTo, wantAllowed := wantTransitions[c][norm(from)]
				if got := lifecycle.Allowed(c, from); got != wantAllowed {
					t.Fatalf("Allowed(%s, %q) = %v, want %v", c, from, got, wantAllowed)
				}
				if !wantAllowed {
					return
				}
				if got := lifecycle.Target(c, from); got != wantTo {
					t.Errorf("Target(%s, %q) = %q, want %q", c, from, got, wantTo)
				}
			})
		}
	}
}

func TestNoCallLeavesAFinalPhase(t *testing.T) {
	for _, from := range allPhases {
		if !wantFinal[from] {
			continue
		}
		for _, c := range lifecycle.Calls {
			if lifecycle.Allowed(c, from) {
				t.Errorf("Allowed(%s, %s) = true; a final phase must accept no call", c, from)
			}
		}
	}
}

func TestUnknownPhaseAndCall(t *testing.T) {
	bogus := opsv1.OperationPhase("Bogus")
	for _, c := range lifecycle.Calls {
		if lifecycle.Allowed(c, bogus) {
			t.Errorf("Allowed(%s, Bogus) = true, want false", c)
		}
	}
	unknown := lifecycle.Call(len(lifecycle.Calls) + 7)
	for _, p := range phasesWithUnset {
		if lifecycle.Allowed(unknown, p) {
			t.Errorf("Allowed(unknown call, %q) = true, want false", p)
		}
	}
}

func TestPhaseChangeAllowed(t *testing.T) {
	// The expected answer is derived from the hand-written call table only.
	derived := func(from, to opsv1.OperationPhase) bool {
		from, to = norm(from), norm(to)
		if from == to {
			return true
		}
		for _, m := range wantTransitions {
			if got, ok := m[from]; ok && got == to {
				return true
			}
		}
		return false
	}
	for _, from := range phasesWithUnset {
		for _, to := range phasesWithUnset {
			t.Run(phaseName(from)+"->"+phaseName(to), func(t *testing.T) {
				want := derived(from, to)
				if got := lifecycle.PhaseChangeAllowed(from, to); got != want {
					t.Errorf("PhaseChangeAllowed(%q, %q) = %v, want %v", from, to, got, want)
				}
				// The call table and the CEL table must say the same thing.
				if cel := slices.Contains(wantPhaseChanges[norm(from)], norm(to)); cel != want {
					t.Errorf("test tables disagree on %s -> %s: calls say %v, CEL says %v", from, to, want, cel)
				}
			})
		}
	}
}

func TestPhasePredicates(t *testing.T) {
	for _, p := range phasesWithUnset {
		t.Run(phaseName(p), func(t *testing.T) {
			if got := lifecycle.IsTerminal(p); got != wantTerminal[p] {
				t.Errorf("IsTerminal(%q) = %v, want %v", p, got, wantTerminal[p])
			}
			if got := lifecycle.IsFinal(p); got != wantFinal[p] {
				t.Errorf("IsFinal(%q) = %v, want %v", p, got, wantFinal[p])
			}
			if got := lifecycle.IsActive(p); got != wantActive[p] {
				t.Errorf("IsActive(%q) = %v, want %v", p, got, wantActive[p])
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	for _, p := range allPhases {
		if got := lifecycle.Normalize(p); got != p {
			t.Errorf("Normalize(%q) = %q, want it unchanged", p, got)
		}
	}
	if got := lifecycle.Normalize(""); got != pending {
		t.Errorf("Normalize(\"\") = %q, want Pending", got)
	}
}
