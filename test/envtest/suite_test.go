// Package envtest runs the operator against a real kube-apiserver and etcd
// (built into bin/ by `make controlplane`) with the real manager in-process.
package envtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/manager"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

var (
	cfg       *rest.Config
	k8s       client.WithWatch
	testEnv   *envtest.Environment
	kubectl   string
	kubeconf  string
	nsCounter atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	var err error
	if testEnv, cfg, k8s, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	kubectl = filepath.Join(testenv.Assets(), "kubectl")
	if kubeconf, err = writeKubeconfig(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(kubeconf)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := manager.New(cfg, manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", Clock: clock.RealClock{},
		SessionConcurrency: 4, OperationConcurrency: 4, CountsInterval: 50 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if err := warmUp(); err != nil {
		fmt.Fprintf(os.Stderr, "warm-up: %v\n", err)
		return 1
	}
	return m.Run()
}

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_MANAGER") != "" {
		return -1
	}
	return 2 // errors only
}

// warmUp checks the manager admits before any test runs.
func warmUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := "warm-up-manager"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	rt := opsclient.NewFromClient(k8s, ns, clock.RealClock{})
	defer rt.Close()
	if err := rt.RegisterSession(ctx, "warm-up", opsclient.SessionConfig{}); err != nil {
		return err
	}
	reg, err := rt.OpsLifecycleRegistry(ctx, "warm-up")
	if err != nil {
		return err
	}
	return reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: "warm-up", Kind: opsv1.BackgroundToolOp})
}

// newNamespace gives each test its own namespace.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%03d", nsCounter.Add(1))
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// newRegistry registers a fresh session in a fresh namespace and returns its registry.
func newRegistry(t *testing.T, sc opsclient.SessionConfig) (*opsclient.Runtime, *opsclient.Registry) {
	t.Helper()
	ctx := testContext(t)
	rt := opsclient.NewFromClient(k8s, newNamespace(t), clock.RealClock{})
	t.Cleanup(rt.Close)
	id := opsclient.NewSessionID()
	if err := rt.RegisterSession(ctx, id, sc); err != nil {
		t.Fatalf("RegisterSession: %v", err)
	}
	reg, err := rt.OpsLifecycleRegistry(ctx, id)
	if err != nil {
		t.Fatalf("OpsLifecycleRegistry: %v", err)
	}
	return rt, reg
}

// testContext bounds a test so that a hang fails it instead of the suite.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func writeKubeconfig() (string, error) {
	user, err := testEnv.AddUser(envtest.User{Name: "tester", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "envtest-kubeconfig-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(kc)
	return f.Name(), err
}
