package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// kcmControllers are the kube-controller-manager controllers a cluster
// without nodes has use for:
//
//   - garbage-collector-controller: deletes dependents whose owner is gone
//     (an OpsSession's Operations carry ownerReferences to it).
//   - namespace-controller: empties and removes a deleted namespace; it
//     finds every namespaced resource, the CRDs' too, through discovery.
//   - clusterrole-aggregation-controller: fills the built-in admin, edit
//     and view roles from the roles aggregated into them, ours included.
//   - serviceaccount-controller: the default ServiceAccount of each
//     namespace.
//   - serviceaccount-token-controller: tokens for kubernetes.io/service-
//     account-token Secrets, signed with the key envtest gives the API
//     server (sa-signer.key in its certificate folder).
//   - root-ca-certificate-publisher-controller: the kube-root-ca.crt
//     ConfigMap of each namespace, from the API server's serving CA.
//   - validatingadmissionpolicy-status-controller: type-checks the
//     admission policies and reports warnings in their status.
//
// The others are left out because they need what this control plane does
// not have: workload controllers (deployment, replicaset, job, cronjob,
// daemonset, statefulset, ttl-after-finished, disruption, pod garbage
// collection, endpoints, horizontal-pod-autoscaler) act on Pods that no
// scheduler places and no kubelet runs; node-ipam, node-lifecycle and
// taint-eviction need Nodes; the persistentvolume and attach-detach
// controllers need storage; certificatesigningrequest-signing needs the
// cluster CA's private key, which envtest keeps in memory; bootstrap-signer
// and token-cleaner serve node bootstrap tokens.
var kcmControllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"clusterrole-aggregation-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"validatingadmissionpolicy-status-controller",
}

// controllerManager is a running kube-controller-manager.
type controllerManager struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startControllerManager starts bin/kube-controller-manager against env's API
// server as the built-in system:kube-controller-manager user, each
// controller with its own service account's credentials (as kubeadm sets it
// up; the bootstrap RBAC policy grants them), serving its health checks on a
// free loopback port. It returns once /healthz answers ok.
func startControllerManager(ctx context.Context, env *envtest.Environment, bin, data string) (*controllerManager, error) {
	run := filepath.Join(data, "run")
	user, err := env.AddUser(envtest.User{Name: "system:kube-controller-manager"}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(run, "kube-controller-manager.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	certDir := env.ControlPlane.APIServer.CertDir
	rootCA := filepath.Join(run, "apiserver-ca.crt")
	if err := os.WriteFile(rootCA, env.Config.CAData, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(data, "kube-controller-manager.log")
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	// The child holds its own copy of the descriptor once started; a close
	// error on ours loses nothing.
	defer func() { _ = out.Close() }()

	exe := filepath.Join(bin, "kube-controller-manager")
	cmd := exec.Command(exe,
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--use-service-account-credentials=true",
		"--controllers="+strings.Join(kcmControllers, ","),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(run, "kube-controller-manager-certs"),
		"--service-account-private-key-file="+filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file="+rootCA,
	)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a Ctrl-C in the terminal reaches only
	// devcluster, which stops things in order; killed by the kernel if
	// devcluster dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &controllerManager{cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() { _ = cmd.Wait(); close(c.done) }()
	if err := recordPid(run, cmd.Process.Pid, "kube-controller-manager", exe); err != nil {
		c.stop()
		return nil, err
	}

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	deadline := time.After(time.Minute)
	for {
		if resp, err := hc.Get(url); err == nil {
			_ = resp.Body.Close() // only the status matters; the body is empty
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-c.done:
			return nil, fmt.Errorf("kube-controller-manager exited while starting (%v); see %s", cmd.ProcessState, logFile)
		case <-deadline:
			c.stop()
			return nil, fmt.Errorf("kube-controller-manager not healthy after a minute; see %s", logFile)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for it to exit, SIGKILL after 10 s.
func (c *controllerManager) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	// Only the port number was wanted; the listener was never used.
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
