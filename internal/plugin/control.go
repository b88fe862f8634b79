package plugin

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// request is one of the spec control requests the controller carries out.
type request struct {
	verb  string // the subcommand and the spec field
	call  lifecycle.Call
	short string
	field func(*opsv1.OperationSpec) **opsv1.ControlRequest
}

var (
	cancelRequest = request{"cancel", lifecycle.CancelOperation,
		"Ask the operator to cancel an operation (spec.cancel)",
		func(s *opsv1.OperationSpec) **opsv1.ControlRequest { return &s.Cancel }}
	retireRequest = request{"retire", lifecycle.RequestRetire,
		"Ask the operator to retire a Running operation (spec.retire)",
		func(s *opsv1.OperationSpec) **opsv1.ControlRequest { return &s.Retire }}
	abortRequest = request{"abort", lifecycle.AbortProvisioning,
		"Ask the operator to abort a Provisioning operation (spec.abort)",
		func(s *opsv1.OperationSpec) **opsv1.ControlRequest { return &s.Abort }}
	requests = []request{cancelRequest, retireRequest, abortRequest}
)

// allowedFrom lists the phases the lifecycle table allows the call from.
func allowedFrom(c lifecycle.Call) []string {
	var out []string
	for _, p := range lifecycle.Phases {
		if lifecycle.Allowed(c, p) {
			out = append(out, string(p))
		}
	}
	return out
}

// orList joins "a", "a or b", "a, b or c".
func orList(xs []string) string {
	if len(xs) <= 1 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// checkRequest says whether the request can take effect on the operation
// in its current phase, by the lifecycle table the controller follows.
// Without it, a retire of a Provisioning operation would be stored and
// never carried out.
func checkRequest(op *opsv1.Operation, r request) error {
	phase := lifecycle.Normalize(op.Status.Phase)
	if lifecycle.IsFinal(phase) {
		return fmt.Errorf("cannot %s operation %s: it is already %s, and a final operation does not change", r.verb, op.Name, phase)
	}
	if lifecycle.Allowed(r.call, phase) {
		return nil
	}
	var instead []string
	for _, other := range requests {
		if lifecycle.Allowed(other.call, phase) {
			instead = append(instead, other.verb)
		}
	}
	msg := fmt.Sprintf("cannot %s operation %s: it is %s, and %s is only allowed from %s",
		r.verb, op.Name, phase, r.verb, orList(allowedFrom(r.call)))
	if len(instead) > 0 {
		msg += fmt.Sprintf(" (from %s: %s)", phase, orList(instead))
	}
	return fmt.Errorf("%s", msg)
}

func newControlCommand(o *options, r request) *cobra.Command {
	pf := printFlags(r.verb + " requested")
	var reason string
	cmd := &cobra.Command{
		Use:   r.verb + " OPERATION [--reason TEXT]",
		Short: r.short,
		Long: fmt.Sprintf(`%s.

The request is a merge patch of spec.%s, which the controller carries out.
It is refused here, with the phase and what is allowed, when the
operation's phase does not allow it: %s is allowed only from %s, and never
on a final operation. Requests are write-once: asking again with the same
reason does nothing.`, r.short, r.verb, r.verb, orList(allowedFrom(r.call))),
		Example: fmt.Sprintf("  kubectl meerkat %s index-repository --reason 'not needed'", r.verb),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, ns, err := o.prepare(pf)
			if err != nil {
				return err
			}
			var reasonPtr *string
			if cmd.Flags().Changed("reason") {
				reasonPtr = &reason
			}
			op, already, err := patchRequest(cmd.Context(), c, ns, args[0], r, reasonPtr)
			if err != nil {
				return err
			}
			if p != nil {
				return p.PrintObj(typed(op), o.streams.Out)
			}
			if already {
				_, err := fmt.Fprintf(o.streams.Out, "operation.%s/%s %s already requested (it is %s)\n",
					opsv1.GroupVersion.Group, op.Name, r.verb, lifecycle.Normalize(op.Status.Phase))
				return err
			}
			return (&printers.NamePrinter{Operation: r.verb + " requested"}).PrintObj(typed(op), o.streams.Out)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "Why; recorded in the outcome where the outcome has a reason.")
	addPrintFlags(cmd, pf)
	return cmd
}

// patchRequest sets the request with a merge patch carrying the
// resourceVersion it checked, so the phase it checked is the phase it
// patched. already reports an identical request already in place.
func patchRequest(ctx context.Context, c client.Client, ns, name string, r request, reason *string) (op *opsv1.Operation, already bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		op = &opsv1.Operation{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, op); err != nil {
			return notFound(err, name, ns)
		}
		var err error
		already, err = decideRequest(op, r, reason)
		if err != nil || already {
			return err
		}
		base := op.DeepCopy()
		*r.field(&op.Spec) = &opsv1.ControlRequest{Reason: reason}
		return c.Patch(ctx, op, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
	return op, already, err
}

// decideRequest: an error when the request cannot take effect or would
// change a request in place (write-once); already when the same request is
// in place, waiting for the controller or carried out (a retired operation
// is Retiring); otherwise the request is to be written.
func decideRequest(op *opsv1.Operation, r request, reason *string) (already bool, err error) {
	phase := lifecycle.Normalize(op.Status.Phase)
	cur := *r.field(&op.Spec)
	same := cur != nil && sameReason(cur.Reason, reason)
	if same && !lifecycle.IsFinal(phase) && !lifecycle.Allowed(r.call, phase) {
		for _, from := range lifecycle.Phases {
			if lifecycle.Allowed(r.call, from) && lifecycle.Target(r.call, from) == phase {
				return true, nil // carried out
			}
		}
	}
	if err := checkRequest(op, r); err != nil {
		return false, err
	}
	if cur == nil {
		return false, nil
	}
	if same {
		return true, nil
	}
	return false, fmt.Errorf("cannot %s operation %s: %s was already requested with %s; requests are write-once",
		r.verb, op.Name, r.verb, describeReason(cur.Reason))
}

func sameReason(a, b *string) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func describeReason(r *string) string {
	if r == nil {
		return "no reason"
	}
	return fmt.Sprintf("reason %q", *r)
}

func newTerminateCommand(o *options) *cobra.Command {
	pf := printFlags("termination requested")
	var reason string
	cmd := &cobra.Command{
		Use:   "terminate SESSION --reason TEXT",
		Short: "Terminate a session: every non-terminal operation becomes Terminated",
		Long: `Set spec.termination on the OpsSession (terminate_owner): the controller
terminates every operation that is not final, with the reason as outcome,
and the session admits nothing more. Termination is write-once: on a
session already terminated (or being terminated) this says so and exits 0.`,
		Example: `  kubectl meerkat terminate demo-session --reason "mob disbanded"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := printer(pf)
			if err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason must not be empty")
			}
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			name := args[0]
			var s *opsv1.OpsSession
			var already bool
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				s = &opsv1.OpsSession{}
				if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
					if apierrors.IsNotFound(err) {
						return fmt.Errorf("session %q not found in namespace %q", name, ns)
					}
					return err
				}
				if s.Spec.Termination != nil {
					already = true
					return nil
				}
				base := s.DeepCopy()
				s.Spec.Termination = &opsv1.Termination{Reason: reason}
				return c.Patch(cmd.Context(), s, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
			})
			if err != nil {
				return err
			}
			if p != nil {
				return p.PrintObj(typed(s), o.streams.Out)
			}
			if already {
				state := "being terminated"
				if cond := meta.FindStatusCondition(s.Status.Conditions, opsv1.ConditionTerminated); cond != nil && cond.Status == metav1.ConditionTrue {
					state = "terminated"
				}
				_, err := fmt.Fprintf(o.streams.Out, "opssession.%s/%s already %s (reason %q)\n", opsv1.GroupVersion.Group, s.Name, state, s.Spec.Termination.Reason)
				return err
			}
			return (&printers.NamePrinter{Operation: "termination requested"}).PrintObj(typed(s), o.streams.Out)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "Why; recorded in every terminated operation's outcome (required).")
	_ = cmd.MarkFlagRequired("reason")
	addPrintFlags(cmd, pf)
	return cmd
}
