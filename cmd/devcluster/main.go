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

	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/internal/manager"
)

func main() {
	bin := flag.String("bin", "bin", "Folder holding kube-apiserver, etcd and kubectl.")
	data := flag.String("data", ".local", "Folder for etcd data, certificates and the kubeconfig.")
	root := flag.String("root", ".", "The repository's top folder: CRDs from config/crd/bases, the policy from config/policy, roles from config/rbac.")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:8080", "Manager metrics address.")
	probes := flag.String("health-probe-bind-address", "127.0.0.1:8081", "Manager health probe address.")
	zo := zap.Options{Development: true}
	zo.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))
	log := ctrl.Log.WithName("devcluster")
	if err := run(log, *bin, *data, *root, *metrics, *probes); err != nil {
		log.Error(err, "devcluster failed")
		os.Exit(1)
	}
}

func run(log logr.Logger, bin, data, root, metricsAddr, probeAddr string) error {
	data, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(data, "etcd"), 0o700); err != nil {
		return err
	}
	env := controlplane.Environment(bin, root)
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

	// What a cluster admin installs: the admission policy and the roles.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controlplane.Install(ctx, env, root); err != nil {
		return fmt.Errorf("installing the admission policy and roles: %w", err)
	}
	// kubeconfig is the cluster's admin, as kind's is; the others are one
	// user of each persona, bound to the role we ship for it.
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
	for file, p := range map[string]controlplane.Persona{"editor": controlplane.Editor, "viewer": controlplane.Viewer, "agent": controlplane.Agent} {
		kc, err := controlplane.KubeConfig(env, p, file)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(data, file+".kubeconfig"), kc, 0o600); err != nil {
			return err
		}
	}
	mgrCfg, err := controlplane.User(env, controlplane.Manager, "ops-operator-manager")
	if err != nil {
		return err
	}
	log.Info("control plane ready", "apiserver", cfg.Host, "took", time.Since(start).Round(time.Millisecond))
	fmt.Printf("\nThe control plane is up. In another terminal:\n\n    export KUBECONFIG=%s PATH=%s:$PATH\n    kubectl apply -f config/samples/ && kubectl get meerkat\n\n"+
		"That kubeconfig is the cluster admin; %s/{editor,viewer,agent}.kubeconfig are users bound to the shipped roles.\n"+
		"Ctrl-C stops the manager, kube-apiserver and etcd.\n\n", kubeconfig, mustAbs(bin), data)

	// The manager runs as its own user, bound to the shipped manager role;
	// its metrics stay plain HTTP on loopback.
	mgr, err := manager.New(mgrCfg, manager.Options{MetricsAddr: metricsAddr, ProbeAddr: probeAddr})
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
