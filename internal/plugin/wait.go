package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
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

	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = sel
			list := &opsv1.OperationList{}
			err := c.List(ctx, list, client.InNamespace(ns), &client.ListOptions{Raw: &opts})
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = sel
			return c.Watch(ctx, &opsv1.OperationList{}, client.InNamespace(ns), &client.ListOptions{Raw: &opts})
		},
	}
	var last *opsv1.Operation
	errDeleted := errors.New("deleted")
	pre := func(store cache.Store) (bool, error) {
		obj, ok, err := store.GetByKey(ns + "/" + name)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, fmt.Errorf("operation %q not found in namespace %q", name, ns)
		}
		last = obj.(*opsv1.Operation)
		return lifecycle.IsFinal(last.Status.Phase), nil
	}
	cond := func(ev watch.Event) (bool, error) {
		op, ok := ev.Object.(*opsv1.Operation)
		if !ok {
			return false, nil
		}
		last = op
		final := lifecycle.IsFinal(op.Status.Phase)
		if ev.Type == watch.Deleted && !final {
			return false, errDeleted
		}
		return final, nil
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &opsv1.Operation{}, pre, cond)
	switch {
	case err == nil:
		return last, nil
	case errors.Is(err, errDeleted):
		return nil, fmt.Errorf("operation %s was deleted while %s, before it finished", name, lifecycle.Normalize(last.Status.Phase))
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		if last == nil {
			return nil, fmt.Errorf("timed out after %s waiting for operation %s", timeout, name)
		}
		return nil, fmt.Errorf("timed out after %s waiting for operation %s: it is still %s", timeout, name, lifecycle.Normalize(last.Status.Phase))
	}
	return nil, err
}

func notFound(err error, name, ns string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("operation %q not found in namespace %q", name, ns)
	}
	return err
}
