package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

const typesFile = "../../api/v1alpha1/operation_types.go"

// The committed rules are what pkg/lifecycle's table gives: a hand edit of a
// generated rule, or a table change without make manifests, fails here.
func TestOperationTypesIsCurrent(t *testing.T) {
	src, err := os.ReadFile(typesFile)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := Rewrite(src, FromLifecycle())
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) > 0 || string(out) != string(src) {
		t.Errorf("%s: rules %v are not what pkg/lifecycle's table gives; run make manifests", typesFile, changed)
	}
}

// markerUnder is the line below rule name's tag in src.
func markerUnder(t *testing.T, src []byte, name string) string {
	t.Helper()
	lines := strings.Split(string(src), "\n")
	for i, l := range lines {
		if m := tagLine.FindStringSubmatch(l); m != nil && m[2] == name {
			return lines[i+1]
		}
	}
	t.Fatalf("no tag for %s", name)
	return ""
}

// The generated transition rule, spelled out for today's table.
func TestTransitionsRule(t *testing.T) {
	got := FromLifecycle().Transitions("oldSelf")
	want := "oldSelf == 'Pending' ? ['Provisioning', 'Rejected', 'Cancelled', 'Terminated'] : " +
		"oldSelf == 'Provisioning' ? ['Running', 'Failed', 'Aborted', 'Cancelled', 'Terminated'] : " +
		"oldSelf == 'Running' ? ['Retiring', 'Completed', 'Failed', 'Cancelled', 'Retired', 'Terminated'] : " +
		"oldSelf == 'Retiring' ? ['Completed', 'Failed', 'Cancelled', 'Retired', 'Terminated'] : []"
	if got != want {
		t.Errorf("Transitions(oldSelf) =\n%s\nwant\n%s", got, want)
	}
}

// A changed table changes exactly the rules that name what changed.
func TestTableChangeChangesRules(t *testing.T) {
	src, err := os.ReadFile(typesFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		change      func(*Table)
		wantChanged []string
		wantText    map[string]string // rule -> substring of its new marker
	}{
		"Retiring may move to Aborted": {
			change: func(tb *Table) {
				tb.Successors[opsv1.PhaseRetiring] = []opsv1.OperationPhase{
					opsv1.PhaseCompleted, opsv1.PhaseFailed, opsv1.PhaseAborted, opsv1.PhaseCancelled, opsv1.PhaseRetired, opsv1.PhaseTerminated,
				}
			},
			wantChanged: []string{rulePhaseTransitions},
			wantText: map[string]string{
				rulePhaseTransitions: "oldSelf == 'Retiring' ? ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated'] : []",
			},
		},
		"Pending may no longer be cancelled": {
			change: func(tb *Table) {
				tb.Successors[opsv1.PhasePending] = []opsv1.OperationPhase{opsv1.PhaseProvisioning, opsv1.PhaseRejected, opsv1.PhaseTerminated}
			},
			wantChanged: []string{ruleStatusUnsetPhase, rulePhaseTransitions, ruleFirstStatus},
			wantText: map[string]string{
				ruleStatusUnsetPhase: "self.phase in ['Pending', 'Provisioning', 'Rejected', 'Terminated']",
				ruleFirstStatus:      "self.status.phase in ['Pending', 'Provisioning', 'Rejected', 'Terminated']",
				rulePhaseTransitions: "oldSelf == 'Pending' ? ['Provisioning', 'Rejected', 'Terminated'] : ",
			},
		},
		"Retired is no outcome": {
			change: func(tb *Table) {
				tb.Terminal = slices.DeleteFunc(slices.Clone(tb.Terminal), func(p opsv1.OperationPhase) bool { return p == opsv1.PhaseRetired })
			},
			wantChanged: []string{ruleOutcomeType, ruleStatusOutcome},
			wantText: map[string]string{
				ruleOutcomeType:   "(Completed, Failed, Aborted, Cancelled or Terminated)",
				ruleStatusOutcome: "in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Terminated'] && self.outcome.type",
			},
		},
		"another refusal prefix": {
			change:      func(tb *Table) { tb.Refusal = "refused" },
			wantChanged: []string{ruleStatusUnsetPhase, rulePhaseTransitions, ruleFirstStatus},
			wantText: map[string]string{
				ruleFirstStatus:      `messageExpression="'refused: Pending -> ' + self.status.phase"`,
				rulePhaseTransitions: `: 'refused: ' + oldSelf + ' -> ' + self"`,
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tb := FromLifecycle()
			tc.change(&tb)
			out, changed, err := Rewrite(src, tb)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(changed, tc.wantChanged) {
				t.Errorf("changed rules %v, want %v", changed, tc.wantChanged)
			}
			for rule, sub := range tc.wantText {
				if line := markerUnder(t, out, rule); !strings.Contains(line, sub) {
					t.Errorf("rule %s does not contain %q:\n%s", rule, sub, line)
				}
			}
			// Generating again from the new file is a fixed point.
			again, changed, err := Rewrite(out, tb)
			if err != nil || len(changed) > 0 || string(again) != string(out) {
				t.Errorf("second rewrite: changed %v, err %v", changed, err)
			}
		})
	}
}

func TestProse(t *testing.T) {
	for ps, want := range map[string]string{"": "", "A": "A", "A B": "A or B", "A B C": "A, B or C"} {
		var phases []opsv1.OperationPhase
		for _, p := range strings.Fields(ps) {
			phases = append(phases, opsv1.OperationPhase(p))
		}
		if got := prose(phases); got != want {
			t.Errorf("prose(%q) = %q, want %q", ps, got, want)
		}
	}
}

func TestValidateRefusesBadTables(t *testing.T) {
	cases := map[string]func(*Table){
		"final phase with successors": func(tb *Table) {
			tb.Successors[opsv1.PhaseCompleted] = []opsv1.OperationPhase{opsv1.PhaseRunning}
		},
		"quote in a phase":         func(tb *Table) { tb.Phases = append(tb.Phases, "Bad'Phase") },
		"unknown successor":        func(tb *Table) { tb.Successors[opsv1.PhaseRunning] = []opsv1.OperationPhase{"Nowhere"} },
		"terminal but not final":   func(tb *Table) { tb.Final = tb.Final[1:] },
		"quote in the refusal":     func(tb *Table) { tb.Refusal = `it's "invalid"` },
		"no refusal prefix":        func(tb *Table) { tb.Refusal = "" },
		"no terminal phase at all": func(tb *Table) { tb.Terminal = nil },
	}
	if err := FromLifecycle().Validate(); err != nil {
		t.Fatalf("pkg/lifecycle's table: %v", err)
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			tb := FromLifecycle()
			change(&tb)
			if err := tb.Validate(); err == nil {
				t.Error("Validate() = nil, want an error")
			}
			if _, _, err := Rewrite([]byte{}, tb); err == nil {
				t.Error("Rewrite() with a bad table = nil error")
			}
		})
	}
}

func TestRewriteRefusesBadTags(t *testing.T) {
	src, err := os.ReadFile(typesFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	const tag, marker = "// +celgen:" + ruleFirstStatus, "// +kubebuilder:validation:XValidation:rule=\"true\"\n"
	i := strings.Index(s, tag)
	if i < 0 {
		t.Fatal("no " + ruleFirstStatus + " tag")
	}
	eol := i + strings.Index(s[i:], "\n") + 1 // just past the tag line
	cases := map[string]struct{ in, wantErr string }{
		"unknown rule":         {s[:i] + "// +celgen:no-such-rule\n" + marker + s[i:], `no rule named "no-such-rule"`},
		"tagged twice":         {s[:i] + tag + "\n" + marker + s[i:], `rule "` + ruleFirstStatus + `" is tagged twice`},
		"not above a marker":   {s[:eol] + "// a comment\n" + s[eol:], `the tag of rule "` + ruleFirstStatus + `" is not directly above`},
		"tag on the last line": {"package x\n" + tag, `the tag of rule "` + ruleFirstStatus + `" is not directly above`},
		"a rule without a tag": {strings.Replace(s, tag, "// "+ruleFirstStatus, 1), "no // +celgen: tag for " + ruleFirstStatus},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := Rewrite([]byte(tc.in), FromLifecycle())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Rewrite() error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
