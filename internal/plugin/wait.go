package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/objwatch"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

func newWaitCommand(o *options) *cobra.Command {
	pf := printFlags("")
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait OPERATION",
		Short: "Wait for an operation's outcome; exit 0 only when it Completed",
		Long: `Watch an Operation until it is final (a terminal outcome, or Rejected).

Completed: prints the result's content and exits 0. Any other outcome
(Failed, Aborted, Cancelled, Retired, Terminated, Rejected): writes the
outcome to stderr and exits 2. Errors, a timeout included, exit 1.
With -o, prints the final Operation instead.`,
		Example: `  kubectl meerkat wait index-repository --timeout=5m
  result=$(kubectl meerkat wait index-repository) || echo "did not complete"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, ns, err := o.prepare(pf)
			if err != nil {
				return err
			}
			op, err := waitFinal(cmd.Context(), c, ns, args[0], timeout)
			if err != nil {
				return err
			}
			if p != nil {
				if err := p.PrintObj(typed(op), o.streams.Out); err != nil {
					return err
				}
			} else if op.Status.Phase == opsv1.PhaseCompleted {
				content := op.Status.Outcome.Result.Content
				if content != "" && !strings.HasSuffix(content, "\n") {
					content += "\n"
				}
				if _, err := fmt.Fprint(o.streams.Out, content); err != nil {
					return err
				}
			}
			if op.Status.Phase == opsv1.PhaseCompleted {
				return nil
			}
			return &exitError{code: ExitNotCompleted,
				err: fmt.Errorf("operation %s did not complete: %s", op.Name, outcome(op, 4096))}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second,
		"How long to wait: 0 checks once, a negative value waits a week.")
	addPrintFlags(cmd, pf)
	return cmd
}

// waitFinal watches the operation until its phase is final and returns it.
func waitFinal(ctx context.Context, c client.WithWatch, ns, name string, timeout time.Duration) (*opsv1.Operation, error) {
	if timeout == 0 {
		op := &opsv1.Operation{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, op); err != nil {
			return nil, notFound(err, name, ns)
		}
		if !lifecycle.IsFinal(op.Status.Phase) {
			return nil, fmt.Errorf("operation %s is %s, not final yet (--timeout=0 checks once)", name, lifecycle.Normalize(op.Status.Phase))
		}
		return op, nil
	}
	if timeout < 0 {
		timeout = 7 * 24 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var last *opsv1.Operation
	err := objwatch.Until(ctx, c, ns, name, &opsv1.Operation{}, &opsv1.OperationList{}, func(o client.Object) bool {
		last = o.(*opsv1.Operation)
		return lifecycle.IsFinal(last.Status.Phase)
	})
	switch {
	case err == nil:
		return last, nil
	case errors.Is(err, objwatch.ErrDeleted) && last == nil:
		return nil, operationNotFound(name, ns)
	case errors.Is(err, objwatch.ErrDeleted):
		return nil, fmt.Errorf("operation %s was deleted while %s, before it finished", name, lifecycle.Normalize(last.Status.Phase))
	case errors.Is(err, context.DeadlineExceeded):
		if last == nil {
			return nil, fmt.Errorf("timed out after %s waiting for operation %s", timeout, name)
		}
		return nil, fmt.Errorf("timed out after %s waiting for operation %s: it is still %s", timeout, name, lifecycle.Normalize(last.Status.Phase))
	}
	return nil, err
}

func notFound(err error, name, ns string) error {
	if apierrors.IsNotFound(err) {
		return operationNotFound(name, ns)
	}
	return err
}

func operationNotFound(name, ns string) error {
	return fmt.Errorf("operation %q not found in namespace %q", name, ns)
}
