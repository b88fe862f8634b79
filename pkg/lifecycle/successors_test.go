package lifecycle_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// wantSuccessors is written by hand, in the order Successors promises: the
// phases that are not terminal first, then the terminal ones, each in
// lifecycle.Phases order. hack/celgen writes these lists into the CRD.
var wantSuccessors = map[opsv1.OperationPhase][]opsv1.OperationPhase{
	pending:      {provisioning, rejected, cancelled, terminated},
	provisioning: {running, failed, aborted, cancelled, terminated},
	running:      {retiring, completed, failed, cancelled, retired, terminated},
	retiring:     {completed, failed, cancelled, retired, terminated},
}

func TestSuccessors(t *testing.T) {
	for _, from := range phasesWithUnset {
		t.Run(phaseName(from), func(t *testing.T) {
			got := lifecycle.Successors(from)
			if diff := cmp.Diff(wantSuccessors[norm(from)], got); diff != "" {
				t.Errorf("Successors(%q) mismatch (-want +got):\n%s", from, diff)
			}
			// The same set as PhaseChangeAllowed, from itself left out.
			for _, to := range allPhases {
				listed := slices.Contains(got, to)
				if want := to != norm(from) && lifecycle.PhaseChangeAllowed(from, to); listed != want {
					t.Errorf("Successors(%q) lists %s: %v, PhaseChangeAllowed says %v", from, to, listed, want)
				}
			}
		})
	}
}

// A phase is final exactly when no status write can leave it: the seal
// rules (generated from Final) and the transition rule (from Successors)
// must not contradict each other.
func TestFinalExactlyWithoutSuccessors(t *testing.T) {
	for _, p := range allPhases {
		if final, none := lifecycle.IsFinal(p), len(lifecycle.Successors(p)) == 0; final != none {
			t.Errorf("%s: IsFinal = %v, but it has successors %v", p, final, lifecycle.Successors(p))
		}
	}
}

func TestTerminalAndFinalLists(t *testing.T) {
	wantTerminalList := []opsv1.OperationPhase{completed, failed, aborted, cancelled, retired, terminated}
	if diff := cmp.Diff(wantTerminalList, lifecycle.Terminal()); diff != "" {
		t.Errorf("Terminal() mismatch (-want +got):\n%s", diff)
	}
	wantFinalList := []opsv1.OperationPhase{completed, failed, aborted, cancelled, retired, terminated, rejected}
	if diff := cmp.Diff(wantFinalList, lifecycle.Final()); diff != "" {
		t.Errorf("Final() mismatch (-want +got):\n%s", diff)
	}
	// The lists agree with the predicates, phase by phase.
	for _, p := range allPhases {
		inTerminal, inFinal := slices.Contains(lifecycle.Terminal(), p), slices.Contains(lifecycle.Final(), p)
		if inTerminal != wantTerminal[p] || inFinal != wantFinal[p] {
			t.Errorf("%s: in Terminal() %v, in Final() %v; want %v, %v", p, inTerminal, inFinal, wantTerminal[p], wantFinal[p])
		}
	}
}
