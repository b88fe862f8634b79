// Package plugin is the kubectl plugin `kubectl meerkat`: the sessions and
// operations of the ops-operator as a person sees them, with kubectl's
// conventions (the kubeconfig flags of genericclioptions, -o through the
// cli-runtime printers, errors on stderr).
//
// cmd/kubectl-meerkat only parses os.Args and calls Run, so tests call Run
// in-process with their own arguments and writers.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitError: the command failed (bad usage, API error, refused request, timeout).
	ExitError = 1
	// ExitNotCompleted: wait saw a final outcome other than Completed.
	ExitNotCompleted = 2
)

// exitError carries an exit code other than ExitError. Quiet means the
// command already said what there is to say.
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run runs `kubectl meerkat` with args (os.Args[1:]) and returns the exit
// code: 0 on success, 1 on an error (written to stderr), and for wait 2
// when the operation ended other than Completed.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: stdout, ErrOut: stderr}
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.quiet {
			reportError(stderr, ee.err)
		}
		return ee.code
	}
	reportError(stderr, err)
	return ExitError
}

// reportError writes err to stderr. A failed write has nowhere to be
// reported: the exit code still tells the failure.
func reportError(stderr io.Writer, err error) {
	_, _ = fmt.Fprintf(stderr, "error: %v\n", err)
}

// options are the flags every command shares.
type options struct {
	streams genericiooptions.IOStreams
	config  *genericclioptions.ConfigFlags
}

// NewCommand returns the root command, `kubectl meerkat`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{
		streams: streams,
		config:  genericclioptions.NewConfigFlags(true),
	}
	root := &cobra.Command{
		Use:   "meerkat",
		Short: "Inspect and steer Meerkat operations and sessions (ops.meerkat.dev)",
		Long: `kubectl meerkat shows a session's operations as a tree, waits for an
operation's outcome, asks the ops-operator to cancel, retire or abort an
operation or to terminate a session, collects finished operations, and shows
each session's load.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl meerkat"},
		SilenceErrors: true,
		SilenceUsage:  true,
		// No positional argument of its own: an unknown subcommand is an error.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.config.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newGetCommand(o),
		newWaitCommand(o),
		newControlCommand(o, cancelRequest),
		newControlCommand(o, retireRequest),
		newControlCommand(o, abortRequest),
		newTerminateCommand(o),
		newCollectCommand(o),
		newTopCommand(o),
	)
	return root
}

// client connects as the kubeconfig flags say and returns the namespace
// to work in (--namespace, else the context's, else "default").
func (o *options) client() (client.WithWatch, string, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubectl-meerkat"
	cfg.WarningHandler = rest.NewWarningWriter(o.streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: opsclient.Scheme()})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// printFlags are -o json|yaml|name; empty is the command's own human output.
// prepare returns a command's printer and a client for its namespace.
func (o *options) prepare(pf *genericclioptions.PrintFlags) (printers.ResourcePrinter, client.WithWatch, string, error) {
	p, err := printer(pf)
	if err != nil {
		return nil, nil, "", err
	}
	c, ns, err := o.client()
	return p, c, ns, err
}

func printFlags(operation string) *genericclioptions.PrintFlags {
	f := genericclioptions.NewPrintFlags(operation).WithTypeSetter(opsclient.Scheme())
	// Go templates and jsonpath are not offered: json, yaml and name only.
	f.TemplatePrinterFlags = nil
	return f
}

func addPrintFlags(cmd *cobra.Command, f *genericclioptions.PrintFlags) {
	f.JSONYamlPrintFlags.AddFlags(cmd)
	cmd.Flags().StringVarP(f.OutputFormat, "output", "o", *f.OutputFormat,
		"Output format. One of: (json, yaml, kyaml, name). Default: human-readable.")
}

// printer returns the -o printer, or nil for the human output.
func printer(f *genericclioptions.PrintFlags) (printers.ResourcePrinter, error) {
	if f.OutputFormat == nil || *f.OutputFormat == "" {
		return nil, nil
	}
	return f.ToPrinter()
}

// typed sets the object's apiVersion and kind from the scheme, as the
// printers need them.
func typed[T runtime.Object](obj T) T {
	if gvk, err := apiutil.GVKForObject(obj, opsclient.Scheme()); err == nil {
		obj.GetObjectKind().SetGroupVersionKind(gvk)
	}
	return obj
}

// asList wraps objects of different kinds in a kubectl-style v1 List.
func asList(objs ...client.Object) (runtime.Object, error) {
	list := &unstructured.UnstructuredList{Object: map[string]any{
		"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""},
	}}
	for _, obj := range objs {
		b, err := json.Marshal(typed(obj))
		if err != nil {
			return nil, err
		}
		u := unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		list.Items = append(list.Items, u)
	}
	return list, nil
}

// age is kubectl's AGE column.
func age(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t))
}

// oneLine makes text fit one table cell.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
