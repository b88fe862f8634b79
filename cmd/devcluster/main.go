// Command devcluster is `make run`: it starts a local control plane (a real
// kube-apiserver and etcd on loopback, data under .local/, and a
// kube-controller-manager running the garbage collector, the namespace
// controller and the other controllers that apply without nodes), installs
// the CRDs, writes a kubeconfig for kubectl, and runs the manager in-process
// until Ctrl-C, then stops everything it started.
//
// It leaks no process, even when it is killed with SIGKILL or interrupted
// while it starts: see procs.go.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	maybeShim()
	bin := flag.String("bin", "bin", "Folder holding kube-apiserver, kube-controller-manager, etcd and kubectl.")
	data := flag.String("data", ".local", "Folder for etcd data, certificates, the kubeconfigs and the run state (pids, lock).")
	root := flag.String("root", ".", "The repository's top folder: CRDs from config/crd/bases, the policy from config/policy, roles from config/rbac.")
	metrics := flag.String("metrics-bind-address", "127.0.0.1:8080", "Manager metrics address (0 disables).")
	probes := flag.String("health-probe-bind-address", "127.0.0.1:8081", "Manager health probe address (0 disables).")
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

func run(log logr.Logger, bin, data, root, metricsAddr, probeAddr string) (err error) {
	if data, err = filepath.Abs(data); err != nil {
		return err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	runDir := filepath.Join(data, "run")
	for _, d := range []string{filepath.Join(data, "etcd"), runDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// One devcluster per data folder; then whatever a previous one left
	// running (killed with SIGKILL, or an older devcluster) goes.
	lock, err := lockData(data)
	if err != nil {
		return err
	}
	// Closing releases the flock; the file holds only our pid, so a close
	// error loses nothing.
	defer func() { _ = lock.Close() }()
	if err := cleanStale(data, func(pid int, why string, args []string) {
		log.Info("killing a process left by a previous devcluster", "pid", pid, "why", why, "command", strings.Join(args, " "))
	}); err != nil {
		return err
	}
	defer clearRun(data)
	shims, err := installShims(runDir, bin)
	if err != nil {
		return err
	}

	// Ctrl-C or SIGTERM: stop, in order, once everything runs. While the
	// control plane starts, envtest cannot be interrupted (it would wait
	// out its timeouts), so the children started so far are killed, as a
	// SIGKILL of devcluster would, and devcluster exits at once. A second
	// Ctrl-C during the orderly stop does the same.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready atomic.Bool
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		if ready.Load() {
			cancel()
			<-sigs
		}
		log.Info("interrupted: killing the control plane")
		killRecorded(data)
		clearRun(data)
		os.Exit(130)
	}()

	env := controlplane.Environment(bin, root)
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(data, "etcd"), Path: filepath.Join(shims, "etcd")}
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(shims, "kube-apiserver")
	// The API server's certificates go to a temporary folder of our own,
	// recorded so that the next start removes it if this one is killed.
	if api.CertDir, err = os.MkdirTemp("", "k8s_test_framework_"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(runDir, "apiserver-cert-dir"), []byte(api.CertDir+"\n"), 0o600); err != nil {
		return err
	}
	start := time.Now()
	cfg, err := env.Start()
	defer func() {
		log.Info("stopping the control plane")
		if err := env.Stop(); err != nil {
			log.Error(err, "stopping the control plane")
		}
	}()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}

	// The garbage collector, the namespace controller and the other
	// controllers that apply without nodes.
	kcm, err := startControllerManager(ctx, env, bin, data)
	if err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	defer func() {
		log.Info("stopping kube-controller-manager")
		kcm.stop()
	}()

	// What a cluster admin installs: the admission policy and the roles.
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
	// The manager runs as its own user, bound to the shipped manager role;
	// its metrics stay plain HTTP on loopback.
	mgr, err := manager.New(mgrCfg, manager.Options{MetricsAddr: metricsAddr, ProbeAddr: probeAddr})
	if err != nil {
		return err
	}
	ready.Store(true)
	log.Info("control plane ready", "apiserver", cfg.Host, "took", time.Since(start).Round(time.Millisecond))
	kubectlNote := ""
	if target, err := os.Readlink(filepath.Join(bin, "kubectl")); err == nil {
		kubectlNote = fmt.Sprintf(" (bin/kubectl is your kubectl, %s)", target)
	}
	fmt.Printf("\nThe control plane is up. In another terminal:\n\n    export KUBECONFIG=%s PATH=%s:$PATH\n    kubectl apply -f config/samples/ && kubectl get meerkat\n\n"+
		"That kubeconfig is the cluster admin; %s/{editor,viewer,agent}.kubeconfig are users bound to the shipped roles%s.\n"+
		"kube-controller-manager runs the garbage collector and the namespace controller (log: %s).\n"+
		"Ctrl-C stops the manager, kube-controller-manager, kube-apiserver and etcd.\n\n", kubeconfig, bin, data, kubectlNote, kcm.log)
	return mgr.Start(ctx)
}
