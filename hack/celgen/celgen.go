package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Table is what the rules are generated from: pkg/lifecycle's, or a changed
// one in the tests.
type Table struct {
	// Phases is every phase; Transitions goes through them in this order.
	Phases []opsv1.OperationPhase
	// Successors are the phases a status write may move each phase to.
	Successors map[opsv1.OperationPhase][]opsv1.OperationPhase
	// Terminal phases carry an outcome; Final ones (a superset) are sealed.
	Terminal, Final []opsv1.OperationPhase
	// Refusal starts every message refusing a phase change.
	Refusal string
}

// FromLifecycle is pkg/lifecycle's table.
func FromLifecycle() Table {
	t := Table{
		Phases:     slices.Clone(lifecycle.Phases),
		Successors: map[opsv1.OperationPhase][]opsv1.OperationPhase{},
		Terminal:   lifecycle.Terminal(),
		Final:      lifecycle.Final(),
		Refusal:    lifecycle.ErrInvalidTransition.Error(),
	}
	for _, p := range t.Phases {
		t.Successors[p] = lifecycle.Successors(p)
	}
	return t
}

// FirstWrite is Pending, which an unset phase means, and the phases Pending
// may move to: what the first status write may set.
func (t Table) FirstWrite() []opsv1.OperationPhase {
	return append([]opsv1.OperationPhase{opsv1.PhasePending}, t.Successors[opsv1.PhasePending]...)
}

// Transitions is a CEL expression of the phases subject may move to: a
// conditional per phase that has successors, else the empty list.
func (t Table) Transitions(subject string) string {
	var b strings.Builder
	for _, from := range t.Phases {
		if to := t.Successors[from]; len(to) > 0 {
			fmt.Fprintf(&b, "%s == '%s' ? %s : ", subject, from, celList(to))
		}
	}
	b.WriteString("[]")
	return b.String()
}

var phaseName = regexp.MustCompile(`^[A-Z][A-Za-z]*$`)

// Validate refuses a table whose names would break a marker's quoting, or
// whose final phases could still change (the seal would contradict the
// transition rule).
func (t Table) Validate() error {
	var errs []error
	for _, p := range t.Phases {
		if !phaseName.MatchString(string(p)) {
			errs = append(errs, fmt.Errorf("phase %q is not a plain name", p))
		}
	}
	known := func(what string, ps []opsv1.OperationPhase) {
		for _, p := range ps {
			if !slices.Contains(t.Phases, p) {
				errs = append(errs, fmt.Errorf("%s: unknown phase %q", what, p))
			}
		}
	}
	known("terminal", t.Terminal)
	known("final", t.Final)
	for _, from := range slices.Sorted(maps.Keys(t.Successors)) {
		known("successors of "+string(from), append([]opsv1.OperationPhase{from}, t.Successors[from]...))
	}
	for _, p := range t.Terminal {
		if !slices.Contains(t.Final, p) {
			errs = append(errs, fmt.Errorf("terminal phase %s is not final", p))
		}
	}
	for _, p := range t.Final {
		if len(t.Successors[p]) > 0 {
			errs = append(errs, fmt.Errorf("final phase %s has successors %v", p, t.Successors[p]))
		}
	}
	if len(t.Terminal) == 0 {
		errs = append(errs, errors.New("no terminal phase"))
	}
	if t.Refusal == "" || strings.ContainsAny(t.Refusal, "'\"\\\n") {
		errs = append(errs, fmt.Errorf("refusal prefix %q is empty or has a quote, backslash or newline", t.Refusal))
	}
	return errors.Join(errs...)
}

func celList(ps []opsv1.OperationPhase) string {
	quoted := make([]string, len(ps))
	for i, p := range ps {
		quoted[i] = "'" + string(p) + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// prose is "A", "A or B", "A, B or C".
func prose(ps []opsv1.OperationPhase) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// unchanged is a CEL expression true when status field f is the same in self
// and oldSelf, unset in both included.
func unchanged(f string) string {
	return fmt.Sprintf("(has(self.%[1]s) ? has(oldSelf.%[1]s) && self.%[1]s == oldSelf.%[1]s : !has(oldSelf.%[1]s))", f)
}

var funcs = template.FuncMap{"list": celList, "prose": prose, "unchanged": unchanged}

// Render is every rule's marker text for the table, by tag name.
func Render(t Table) (map[string]string, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("the lifecycle table cannot be written as CEL: %w", err)
	}
	out := make(map[string]string, len(rules))
	for _, r := range rules {
		tmpl, err := template.New(r.name).Funcs(funcs).Option("missingkey=error").Parse(r.marker)
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, t); err != nil {
			return nil, err
		}
		out[r.name] = b.String()
	}
	return out, nil
}

// Tag marks the marker line below it as generated. It starts with "+", so
// controller-gen leaves it out of the CRD's descriptions, and ignores it as a
// marker it does not know.
var tagLine = regexp.MustCompile(`^(\s*)// \+celgen:([a-z-]+)\b`)

var markerLine = regexp.MustCompile(`^\s*// \+kubebuilder:validation:XValidation:`)

const tagNote = ": generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below"

// Rewrite replaces the marker line under each tag in src with the rule the
// table gives, and each tag line with its canonical form. It returns the new
// source and the names of the rules whose lines changed. Every rule must be
// tagged exactly once, directly above an XValidation marker.
func Rewrite(src []byte, t Table) ([]byte, []string, error) {
	rendered, err := Render(t)
	if err != nil {
		return nil, nil, err
	}
	lines := strings.Split(string(src), "\n")
	seen := map[string]bool{}
	var changed []string
	for i := 0; i < len(lines); i++ {
		m := tagLine.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent, name := m[1], m[2]
		marker, ok := rendered[name]
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("line %d: no rule named %q in hack/celgen", i+1, name)
		case seen[name]:
			return nil, nil, fmt.Errorf("line %d: rule %q is tagged twice", i+1, name)
		case i+1 == len(lines) || !markerLine.MatchString(lines[i+1]):
			return nil, nil, fmt.Errorf("line %d: the tag of rule %q is not directly above an XValidation marker", i+1, name)
		}
		seen[name] = true
		tag, line := indent+"// +celgen:"+name+tagNote, indent+"// "+marker
		if lines[i] != tag || lines[i+1] != line {
			changed = append(changed, name)
		}
		lines[i], lines[i+1] = tag, line
		i++
	}
	var missing []string
	for _, r := range rules {
		if !seen[r.name] {
			missing = append(missing, r.name)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("no // +celgen: tag for %s", strings.Join(missing, ", "))
	}
	out := []byte(strings.Join(lines, "\n"))
	if bytes.Equal(out, src) {
		return src, nil, nil
	}
	return out, changed, nil
}
