package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// helperEnv makes the test binary a stand-in process that sleeps (see
// TestMain), so the stale-process sweep has something to find.
const helperEnv = "DEVCLUSTER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "sleep" {
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// assets is where the control plane binaries are, as for the envtest suites.
func assets(t *testing.T) string {
	bin := os.Getenv("KUBEBUILDER_ASSETS")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s is missing from %s: run `make controlplane` first", b, bin)
		}
	}
	return bin
}

// devcluster is a running devcluster process and its combined output.
type devcluster struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	up   chan struct{}
	done chan struct{}
}

func (d *devcluster) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// startDevcluster runs exe on data and waits until it says the control
// plane is up.
func startDevcluster(t *testing.T, exe, data string) *devcluster {
	t.Helper()
	root := repoRoot(t)
	d := &devcluster{up: make(chan struct{}), done: make(chan struct{})}
	d.cmd = exec.Command(exe, "--bin", assets(t), "--data", data, "--root", root,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = d.cmd.Wait()
		_ = pw.Close()
		close(d.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		seen := false
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if !seen && strings.Contains(sc.Text(), "The control plane is up") {
				seen = true
				close(d.up)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			// Its children die with it; their pid files and the API
			// server's certificate folder would wait for a next start.
			_ = d.cmd.Process.Kill()
			<-d.done
			killRecorded(data)
			clearRun(data)
		}
		if t.Failed() {
			t.Logf("devcluster pid %d output:\n%s", d.cmd.Process.Pid, d.output())
		}
	})
	select {
	case <-d.up:
	case <-d.done:
		t.Fatalf("devcluster exited before the control plane was up: %v", d.cmd.ProcessState)
	case <-time.After(90 * time.Second):
		t.Fatal("the control plane was not up within 90 s")
	}
	return d
}

// children returns the pids devcluster recorded in data/run that are live.
func children(t *testing.T, data string) []int {
	t.Helper()
	rec := recorded(data)
	pids := make([]int, 0, len(rec))
	for pid := range rec {
		pids = append(pids, pid)
	}
	return pids
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func clientFor(t *testing.T, kubeconfig string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: opsclient.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDevcluster runs the real bin/devcluster: the garbage collector and the
// namespace controller work, a SIGKILL leaks no process and the next start
// on the same data folder needs no cleanup, and Ctrl-C stops everything.
func TestDevcluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	exe := filepath.Join(t.TempDir(), "devcluster")
	build := exec.Command("go", "build", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	first := startDevcluster(t, exe, data)
	admin := clientFor(t, filepath.Join(data, "kubeconfig"))

	t.Run("garbage collection", func(t *testing.T) { checkGarbageCollection(ctx, t, data, admin) })
	t.Run("namespace deletion", func(t *testing.T) { checkNamespaceDeletion(ctx, t, admin) })
	if t.Failed() {
		return
	}
	second := checkRestartAfterKill(ctx, t, exe, data, first)
	checkInterrupt(t, data, second)
}

// checkGarbageCollection: the operations of a deleted session are collected
// through their owner references.
func checkGarbageCollection(ctx context.Context, t *testing.T, data string, admin client.Client) {
	t.Helper()
	agentCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(data, "agent.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := opsclient.New(agentCfg, metav1.NamespaceDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	session := opsclient.NewSessionID()
	if err := rt.RegisterSession(ctx, session, opsclient.SessionConfig{}); err != nil {
		t.Fatal(err)
	}
	reg, err := rt.OpsLifecycleRegistry(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		spec := opsclient.OperationSpec{ID: opsclient.NewOperationID(), Kind: opsv1.BackgroundToolOp, DisplayName: fmt.Sprint("op ", i)}
		if err := reg.RegisterOperation(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	sessionOps := func() ([]opsv1.Operation, error) {
		var l opsv1.OperationList
		if err := admin.List(ctx, &l, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return nil, err
		}
		var out []opsv1.Operation
		for _, op := range l.Items {
			if op.Spec.SessionName == session {
				out = append(out, op)
			}
		}
		return out, nil
	}
	ops, err := sessionOps()
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 {
		t.Fatalf("want 3 operations of the session, got %d", len(ops))
	}
	for _, op := range ops {
		if len(op.OwnerReferences) != 1 || op.OwnerReferences[0].Name != session {
			t.Fatalf("operation %s: want an owner reference to session %s, got %+v", op.Name, session, op.OwnerReferences)
		}
	}
	sess := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: session, Namespace: metav1.NamespaceDefault}}
	if err := admin.Delete(ctx, sess); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the deleted session's operations are collected", func() (bool, error) {
		ops, err := sessionOps()
		return err == nil && len(ops) == 0, err
	})
}

// checkNamespaceDeletion: a namespace holding a session goes away.
func checkNamespaceDeletion(ctx context.Context, t *testing.T, admin client.Client) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "devcluster-test-" + rand.String(5)}}
	if err := admin.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// A custom resource in it: the namespace controller must find the
	// CRD's resources through discovery and wait for the manager to
	// release the session's finalizer.
	sess := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "doomed", Namespace: ns.Name}}
	if err := admin.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := admin.Delete(ctx, ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the deleted namespace disappears", func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKeyFromObject(ns), &corev1.Namespace{})
		return apierrors.IsNotFound(err), err
	})
}

// checkRestartAfterKill sends SIGKILL to first: the children die with
// devcluster, and a new devcluster on the same data folder, which it
// returns, starts without any cleanup by hand.
func checkRestartAfterKill(ctx context.Context, t *testing.T, exe, data string, first *devcluster) *devcluster {
	t.Helper()
	before := children(t, data)
	if len(before) != 3 {
		t.Fatalf("want 3 live children (etcd, kube-apiserver, kube-controller-manager) recorded in %s/run, got %v", data, before)
	}
	certDir, err := os.ReadFile(filepath.Join(data, "run", "apiserver-cert-dir"))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	eventually(t, 10*time.Second, "the children of the killed devcluster are gone", func() (bool, error) {
		for _, pid := range before {
			if running(pid) {
				return false, fmt.Errorf("pid %d still runs", pid)
			}
		}
		return true, nil
	})

	second := startDevcluster(t, exe, data)
	if strings.Contains(second.output(), "timeout waiting") {
		t.Fatalf("the second start waited for a process:\n%s", second.output())
	}
	for _, pid := range before {
		if running(pid) {
			t.Errorf("pid %d of the first devcluster still runs", pid)
		}
	}
	if _, err := os.Stat(strings.TrimSpace(string(certDir))); !os.IsNotExist(err) {
		t.Errorf("the first API server's certificate folder %s is still there (%v)", certDir, err)
	}
	var nss corev1.NamespaceList
	if err := clientFor(t, filepath.Join(data, "kubeconfig")).List(ctx, &nss); err != nil {
		t.Fatalf("the second control plane does not answer: %v", err)
	}
	return second
}

// checkInterrupt: Ctrl-C stops d and all its children and leaves no pid
// file.
func checkInterrupt(t *testing.T, data string, d *devcluster) {
	t.Helper()
	now := children(t, data)
	if len(now) != 3 {
		t.Fatalf("want 3 live children of the second devcluster, got %v", now)
	}
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatal("devcluster did not stop within 60 s of Ctrl-C")
	}
	if !d.cmd.ProcessState.Success() {
		t.Errorf("devcluster exited with %v after Ctrl-C", d.cmd.ProcessState)
	}
	for _, pid := range now {
		if running(pid) {
			t.Errorf("pid %d still runs after Ctrl-C", pid)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(data, "run", "*.pid")); len(files) > 0 {
		t.Errorf("pid files left after Ctrl-C: %v", files)
	}
}

// helper starts the test binary as a sleeping stand-in whose command line
// is args (args[0] is what /proc shows as the executable).
func helper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: self, Args: args, Env: append(os.Environ(), helperEnv+"=sleep")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait for the exec to have happened, so /proc shows args.
	eventually(t, 10*time.Second, "the helper runs", func() (bool, error) {
		p, err := readProc(cmd.Process.Pid)
		return err == nil && len(p.args) > 0 && p.args[0] == args[0], err
	})
	return cmd
}

// TestCleanStale checks what the next start kills: recorded children that
// are still the recorded process, an etcd on the data folder and the
// kube-apiserver on that etcd, a kube-controller-manager with a kubeconfig
// in the data folder; and what it leaves alone: another etcd, a process that
// reuses a recorded pid.
func TestCleanStale(t *testing.T) {
	data := t.TempDir()
	run := filepath.Join(data, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	etcdURL := "http://127.0.0.1:1"
	staleEtcd := helper(t, "/x/etcd", "--data-dir="+filepath.Join(data, "etcd"), "--listen-client-urls="+etcdURL)
	staleAPI := helper(t, "/x/kube-apiserver", "--etcd-servers="+etcdURL)
	staleKCM := helper(t, "/x/kube-controller-manager", "--kubeconfig="+filepath.Join(run, "kube-controller-manager.kubeconfig"))
	recordedAPI := helper(t, "/y/kube-apiserver", "--etcd-servers=http://127.0.0.1:2")
	if err := recordPid(run, recordedAPI.Process.Pid, "kube-apiserver", "/y/kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	otherEtcd := helper(t, "/x/etcd", "--data-dir="+filepath.Join(t.TempDir(), "etcd"), "--listen-client-urls=http://127.0.0.1:3")
	otherAPI := helper(t, "/x/kube-apiserver", "--etcd-servers=http://127.0.0.1:3")
	// A recorded pid now used by another process (another start time).
	reused := helper(t, "/y/kube-apiserver", "--etcd-servers=http://127.0.0.1:4")
	if err := os.WriteFile(filepath.Join(run, fmt.Sprintf("kube-apiserver-%d.pid", reused.Process.Pid)),
		fmt.Appendf(nil, "%d 1 /y/kube-apiserver\n", reused.Process.Pid), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir, err := os.MkdirTemp("", "k8s_test_framework_")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "apiserver-cert-dir"), []byte(certDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	killed := map[int]string{}
	if err := cleanStale(data, func(pid int, why string, _ []string) { killed[pid] = why }); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*exec.Cmd{"etcd on the data folder": staleEtcd, "kube-apiserver on that etcd": staleAPI,
		"kube-controller-manager": staleKCM, "recorded kube-apiserver": recordedAPI} {
		if _, ok := killed[c.Process.Pid]; !ok || running(c.Process.Pid) {
			t.Errorf("%s (pid %d) was not killed; killed: %v", name, c.Process.Pid, killed)
		}
	}
	for name, c := range map[string]*exec.Cmd{"another etcd": otherEtcd, "its kube-apiserver": otherAPI, "a reused pid": reused} {
		if _, ok := killed[c.Process.Pid]; ok || !running(c.Process.Pid) {
			t.Errorf("%s (pid %d) was killed: %s", name, c.Process.Pid, killed[c.Process.Pid])
		}
	}
	if files, _ := filepath.Glob(filepath.Join(run, "*.pid")); len(files) > 0 {
		t.Errorf("pid files left: %v", files)
	}
	if _, err := os.Stat(certDir); !os.IsNotExist(err) {
		t.Errorf("the previous API server's certificate folder %s is still there (%v)", certDir, err)
	}
}

// TestLockData checks that a second devcluster cannot use a data folder in
// use, and is told who holds it.
func TestLockData(t *testing.T) {
	data := t.TempDir()
	f, err := lockData(data)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open conflicts even
	// within one process.
	if _, err := lockData(data); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("want the data folder refused naming pid %d, got %v", os.Getpid(), err)
	}
	_ = f.Close()
	g, err := lockData(data)
	if err != nil {
		t.Fatalf("after the holder closed it: %v", err)
	}
	_ = g.Close()
}
