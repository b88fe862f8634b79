package plugin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

func newGetCommand(o *options) *cobra.Command {
	pf := printFlags("")
	cmd := &cobra.Command{
		Use:   "get SESSION",
		Short: "Show a session and its operations as a tree",
		Long: `Show an OpsSession (policy, limit, active, queued, retained) and its
operations as a tree, with phase, age, progress and outcome, sorted as
Meerkat's ListOperations sorts them: by display name, then by name.
Rejected operations are shown too.`,
		Example: `  kubectl meerkat get demo-session
  kubectl meerkat get demo-session -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, ns, err := o.prepare(pf)
			if err != nil {
				return err
			}
			s, ops, err := sessionTree(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			if p != nil {
				objs := []client.Object{s}
				for _, op := range ops {
					objs = append(objs, op)
				}
				list, err := asList(objs...)
				if err != nil {
					return err
				}
				return p.PrintObj(list, o.streams.Out)
			}
			return printTree(o.streams.Out, s, ops)
		},
	}
	addPrintFlags(cmd, pf)
	return cmd
}

// sessionTree reads the session and its operations, sorted as
// ListOperations sorts them.
func sessionTree(ctx context.Context, c client.Client, ns, name string) (*opsv1.OpsSession, []*opsv1.Operation, error) {
	s := &opsv1.OpsSession{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("session %q not found in namespace %q", name, ns)
		}
		return nil, nil, err
	}
	ops, err := sessionOperations(ctx, c, ns, name)
	return s, ops, err
}

func sessionOperations(ctx context.Context, c client.Client, ns, session string) ([]*opsv1.Operation, error) {
	var list opsv1.OperationList
	if err := c.List(ctx, &list, client.InNamespace(ns),
		client.MatchingFields{"spec.sessionName": session}); err != nil {
		return nil, err
	}
	ops := make([]*opsv1.Operation, 0, len(list.Items))
	for i := range list.Items {
		ops = append(ops, &list.Items[i])
	}
	slices.SortFunc(ops, func(a, b *opsv1.Operation) int {
		if c := strings.Compare(a.Spec.DisplayName, b.Spec.DisplayName); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ops, nil
}

// printTree writes the session line and one line per operation:
//
//	SESSION demo  policy=Reject  limit=3  active=1  queued=0  retained=1  age=2m
//	NAME                    PHASE      AGE  PROGRESS      OUTCOME
//	├─ alpha (op-1)         Running    2m   50% indexing  -
//	└─ beta (op-2)          Completed  2m   -             Completed: 42 files
func printTree(w io.Writer, s *opsv1.OpsSession, ops []*opsv1.Operation) error {
	if _, err := fmt.Fprintln(w, sessionLine(s)); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if len(ops) == 0 {
		if _, err := fmt.Fprintln(tw, "└─ (no operations)"); err != nil {
			return err
		}
		return tw.Flush()
	}
	if _, err := fmt.Fprintln(tw, "NAME\tPHASE\tAGE\tPROGRESS\tOUTCOME"); err != nil {
		return err
	}
	for i, op := range ops {
		branch := "├─ "
		if i == len(ops)-1 {
			branch = "└─ "
		}
		name := op.Name
		if op.Spec.DisplayName != "" {
			name = fmt.Sprintf("%s (%s)", oneLine(op.Spec.DisplayName, 40), op.Name)
		}
		if _, err := fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", branch, name, lifecycle.Normalize(op.Status.Phase),
			age(op.CreationTimestamp.Time), progress(op), outcome(op, 60)); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func sessionLine(s *opsv1.OpsSession) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SESSION %s  policy=%s  limit=%s  active=%d  queued=%d  retained=%d  age=%s",
		s.Name, policy(s), limit(s), s.Status.Active, s.Status.Queued, s.Status.Retained, age(s.CreationTimestamp.Time))
	if t := s.Spec.Termination; t != nil {
		state := "terminating"
		if c := meta.FindStatusCondition(s.Status.Conditions, opsv1.ConditionTerminated); c != nil && c.Status == metav1.ConditionTrue {
			state = "terminated"
		}
		fmt.Fprintf(&b, "  %s=%q", state, t.Reason)
	}
	return b.String()
}

func policy(s *opsv1.OpsSession) string {
	if s.Spec.AdmissionPolicy == "" {
		return string(opsv1.AdmissionReject)
	}
	return string(s.Spec.AdmissionPolicy)
}

func limit(s *opsv1.OpsSession) string {
	if s.Spec.MaxConcurrent == nil {
		return "unlimited"
	}
	return fmt.Sprint(*s.Spec.MaxConcurrent)
}

// progress is the latest report: percent, message and the number of reports.
func progress(op *opsv1.Operation) string {
	p := op.Status.Progress
	if p == nil || (p.Count == 0 && p.Percent == nil && p.Message == "") {
		return "-"
	}
	var parts []string
	if p.Percent != nil {
		parts = append(parts, fmt.Sprintf("%.0f%%", *p.Percent*100))
	}
	if p.Message != "" {
		parts = append(parts, oneLine(p.Message, 30))
	}
	if p.Count > 0 {
		parts = append(parts, fmt.Sprintf("(%d)", p.Count))
	}
	return strings.Join(parts, " ")
}

// outcome describes how the operation ended, or "-" while it has not.
func outcome(op *opsv1.Operation, max int) string {
	st := &op.Status
	if st.Phase == opsv1.PhaseRejected {
		s := "Rejected"
		if r := st.Rejection; r != nil {
			s += ": " + string(r.Reason)
			if r.Limit != nil && r.Active != nil {
				s += fmt.Sprintf(" (limit %d, active %d)", *r.Limit, *r.Active)
			}
		}
		return s
	}
	o := st.Outcome
	if o == nil {
		return "-"
	}
	detail := ""
	switch {
	case o.Result != nil:
		detail = o.Result.Content
		if o.Result.IsError {
			detail = "tool error: " + detail
		}
	case o.Error != "":
		detail = o.Error
	case o.Reason != nil:
		detail = *o.Reason
	}
	if strings.TrimSpace(detail) == "" {
		return string(o.Type)
	}
	return oneLine(string(o.Type)+": "+detail, max)
}
