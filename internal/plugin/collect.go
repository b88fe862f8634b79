package plugin

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

func newCollectCommand(o *options) *cobra.Command {
	pf := printFlags("collected")
	cmd := &cobra.Command{
		Use:   "collect SESSION",
		Short: "Remove the session's finished operations, printing each once",
		Long: `Drain every terminal operation of the session (collect_completed), in
completion order, and print what was collected. Each operation is deleted
with UID and resourceVersion preconditions, so it goes to exactly one
collector however many race: a second collect prints nothing.
Rejected operations are not collected (they never ran).`,
		Example: `  kubectl meerkat collect demo-session
  kubectl meerkat collect demo-session -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, ns, err := o.prepare(pf)
			if err != nil {
				return err
			}
			ctx, session := cmd.Context(), args[0]
			rt := opsclient.NewFromClient(c, ns, clock.RealClock{})
			defer rt.Close()
			reg, err := rt.OpsLifecycleRegistry(ctx, session)
			if err != nil {
				return fmt.Errorf("session %q in namespace %q: %w", session, ns, err)
			}
			// What the operations looked like, for the display names and -o.
			before, err := sessionOperations(ctx, c, ns, session)
			if err != nil {
				return err
			}
			collected, err := reg.CollectCompleted(ctx)
			// Print what was collected even when a later delete failed:
			// those operations are gone and nobody else will report them.
			perr := printCollected(o, p, session, ns, before, collected)
			if err != nil {
				return err
			}
			return perr
		},
	}
	addPrintFlags(cmd, pf)
	return cmd
}

func printCollected(o *options, p printers.ResourcePrinter, session, ns string, before []*opsv1.Operation, collected []opsclient.OperationOutcome) error {
	byName := map[string]*opsv1.Operation{}
	for _, op := range before {
		byName[op.Name] = op
	}
	ops := make([]*opsv1.Operation, 0, len(collected))
	for _, oc := range collected {
		op, ok := byName[oc.ID]
		if !ok {
			// Finished after we listed: all we know is its outcome.
			op = &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: oc.ID, Namespace: ns}}
			op.Spec.SessionName = session
		}
		op = op.DeepCopy()
		op.Status.Phase = oc.Outcome.Type
		op.Status.Outcome = oc.Outcome.DeepCopy()
		ops = append(ops, op)
	}
	if p != nil {
		objs := make([]client.Object, 0, len(ops))
		for _, op := range ops {
			objs = append(objs, op)
		}
		list, err := asList(objs...)
		if err != nil {
			return err
		}
		return p.PrintObj(list, o.streams.Out)
	}
	if len(ops) == 0 {
		_, err := fmt.Fprintf(o.streams.Out, "No finished operations to collect in session %s.\n", session)
		return err
	}
	tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "COLLECTED\tDISPLAY\tOUTCOME"); err != nil {
		return err
	}
	for _, op := range ops {
		display := op.Spec.DisplayName
		if display == "" {
			display = "-"
		}
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%s\n", op.Name, oneLine(display, 40), outcome(op, 80)); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "operations"
	if len(ops) == 1 {
		noun = "operation"
	}
	_, err := fmt.Fprintf(o.streams.Out, "%d %s collected from session %s.\n", len(ops), noun, session)
	return err
}
