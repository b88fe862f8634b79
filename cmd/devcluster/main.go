// Command devcluster is `make run`: it starts a local control plane (a real
// kube-apiserver and etcd on loopback, data under .local/), installs the
// CRDs, writes a kubeconfig for kubectl, and runs the manager in-process
// until Ctrl-C, then stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meerkat-ops/ops-operator/internal/manager"
)

func main() {
	bin := flag.String("bin", "bin", "Folder holding kube-apiserver, etcd and kubectl.")
	data := flag.String("data", ".local", "Folder for etcd data, certificates and the kubeconfig.")
	crds := flag.String("crds", "config/crd/bases", "Folder of CRD manifests to install.")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:8080", "Manager metrics address.")
	probes := flag.String("health-probe-bind-address", "127.0.0.1:8081", "Manager health probe address.")
	zo := zap.Options{Development: true}
	zo.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))
	log := ctrl.Log.WithName("devcluster")
	if err := run(log, *bin, *data, *crds, *metrics, *probes); err != nil {
		log.Error(err, "devcluster failed")
		os.Exit(1)
	}
}

func run(log logr.Logger, bin, data, crds, metricsAddr, probeAddr string) error {
	data, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(data, "etcd"), 0o700); err != nil {
		return err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(data, "etcd")}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		log.Info("stopping the control plane")
		if err := env.Stop(); err != nil {
			log.Error(err, "stopping the control plane")
		}
	}()

	user, err := env.AddUser(envtest.User{Name: "developer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(data, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	log.Info("control plane ready", "apiserver", cfg.Host, "took", time.Since(start).Round(time.Millisecond))
	fmt.Printf("\nThe control plane is up. In another terminal:\n\n    export KUBECONFIG=%s PATH=%s:$PATH\n    kubectl apply -f config/samples/ && kubectl get meerkat\n\nCtrl-C stops the manager, kube-apiserver and etcd.\n\n", kubeconfig, mustAbs(bin))

	mgr, err := manager.New(cfg, manager.Options{MetricsAddr: metricsAddr, ProbeAddr: probeAddr})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mgr.Start(ctx)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
