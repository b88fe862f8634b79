package plugin

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

func newTopCommand(o *options) *cobra.Command {
	pf := printFlags("")
	var all bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show each session's load: active, queued and retained against its limit",
		Long: `Show, per OpsSession in the namespace (or every namespace with -A), the
admission policy, maxConcurrent, and the active, queued and retained counts
the controller keeps in the session's status.`,
		Example: `  kubectl meerkat top
  kubectl meerkat top -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, ns, err := o.prepare(pf)
			if err != nil {
				return err
			}
			var opts []client.ListOption
			if !all {
				opts = append(opts, client.InNamespace(ns))
			}
			list := &opsv1.OpsSessionList{}
			if err := c.List(cmd.Context(), list, opts...); err != nil {
				return err
			}
			slices.SortFunc(list.Items, func(a, b opsv1.OpsSession) int {
				if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
					return c
				}
				return strings.Compare(a.Name, b.Name)
			})
			if p != nil {
				return p.PrintObj(typed(list), o.streams.Out)
			}
			if len(list.Items) == 0 {
				msg := "No sessions found."
				if !all {
					msg = fmt.Sprintf("No sessions found in namespace %s.", ns)
				}
				_, err := fmt.Fprintln(o.streams.ErrOut, msg)
				return err
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 2, ' ', 0)
			header := "SESSION\tPOLICY\tLIMIT\tACTIVE\tQUEUED\tRETAINED\tSTATE\tAGE"
			if all {
				header = "NAMESPACE\t" + header
			}
			if _, err := fmt.Fprintln(tw, header); err != nil {
				return err
			}
			for i := range list.Items {
				s := &list.Items[i]
				row := fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s", s.Name, policy(s), limit(s),
					s.Status.Active, s.Status.Queued, s.Status.Retained, sessionState(s), age(s.CreationTimestamp.Time))
				if all {
					row = s.Namespace + "\t" + row
				}
				if _, err := fmt.Fprintln(tw, row); err != nil {
					return err
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the sessions of every namespace.")
	addPrintFlags(cmd, pf)
	return cmd
}

// sessionState: Terminated, Terminating, Deleting, Ready, or Pending when
// the controller has not processed the latest spec yet.
func sessionState(s *opsv1.OpsSession) string {
	switch {
	case s.DeletionTimestamp != nil:
		return "Deleting"
	case s.Spec.Termination != nil:
		if c := meta.FindStatusCondition(s.Status.Conditions, opsv1.ConditionTerminated); c != nil && c.Status == metav1.ConditionTrue {
			return "Terminated"
		}
		return "Terminating"
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, opsv1.ConditionReady); c != nil &&
		c.Status == metav1.ConditionTrue && c.ObservedGeneration >= s.Generation {
		return "Ready"
	}
	return "Pending"
}
