// Command kubectl-meerkat is the kubectl plugin `kubectl meerkat`. Put it on
// PATH (go install github.com/meerkat-ops/ops-operator/cmd/kubectl-meerkat@latest,
// or krew with plugins/krew/meerkat.yaml) and kubectl finds it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meerkat-ops/ops-operator/internal/plugin"
)

func main() {
	// controller-runtime's client logs nothing a user needs; without a
	// logger it would complain on stderr.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
