package controllers

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// TestEveryFamilyStartsAtZero: once the informer delivers a namespace's
// first operation, every family has that namespace's series, at 0 where
// nothing happened yet, so rate() counts the first event.
func TestEveryFamilyStartsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	op := &opsv1.Operation{Spec: opsv1.OperationSpec{Kind: opsv1.MobMemberChild}}
	op.Namespace = "agents"
	m.OperationEvents().OnAdd(op, true)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(families))
	for _, f := range families {
		names = append(names, f.GetName())
		for _, s := range f.GetMetric() {
			ns := ""
			for _, l := range s.GetLabel() {
				if l.GetName() == labelNamespace {
					ns = l.GetValue()
				}
			}
			if ns != "agents" {
				t.Errorf("%s: a series of namespace %q", f.GetName(), ns)
			}
			if c := s.GetCounter(); c != nil && c.GetValue() != 0 {
				t.Errorf("%s: counter at %v, want 0", f.GetName(), c.GetValue())
			}
			if h := s.GetHistogram(); h != nil && h.GetSampleCount() != 0 {
				t.Errorf("%s: histogram with %d samples, want 0", f.GetName(), h.GetSampleCount())
			}
		}
	}
	sort.Strings(names)
	want := []string{
		"meerkat_ops_admission_wait_seconds", "meerkat_ops_admissions_total", "meerkat_ops_evictions_total",
		"meerkat_ops_operations", "meerkat_ops_rejections_total", "meerkat_ops_terminations_total",
		"meerkat_ops_time_to_terminal_seconds", "meerkat_ops_timeouts_total",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("families (-want +got):\n%s", diff)
	}
}
