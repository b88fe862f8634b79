// Package envtest runs the operator against a real kube-apiserver and etcd
// (built into bin/ by `make controlplane`) with the real manager in-process.
package envtest

import (
	"context"
	"errors"
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
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/internal/manager"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// Each identity is a user bound to the role we ship for it; system:masters
// (admin) only installs the CRDs, the policy and the roles, and creates the
// tests' namespaces.
var (
	cfg     *rest.Config
	admin   client.WithWatch
	testEnv *envtest.Environment
	// k8s is a person with the editor role, as with kubectl.
	k8s client.WithWatch
	// agent is an in-cluster agent with the agent role: every registry
	// (pkg/opsclient) and raw agent status write goes through it.
	agent client.WithWatch
	// controllerIdentity writes as the manager does (the manager role), for
	// the CEL walk, which must reach every phase.
	controllerIdentity client.WithWatch
	kubectl            string
	// kubeconf is a person with the editor role; agentKubeconf an agent.
	kubeconf, agentKubeconf string
	nsCounter               atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	var err error
	if testEnv, cfg, admin, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if err := identities(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubectl = filepath.Join(testenv.Assets(), "kubectl")
	if kubeconf, err = writeKubeconfig(controlplane.Editor, "kubectl-editor"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.Remove(kubeconf) }() // best-effort cleanup of a temp file
	if agentKubeconf, err = writeKubeconfig(controlplane.Agent, "kubectl-agent"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.Remove(agentKubeconf) }() // best-effort cleanup of a temp file

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgrCfg, err := testenv.User(testEnv, controlplane.Manager, "ops-operator-manager")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := manager.New(mgrCfg, manager.Options{
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
		// The tests are over; an error stopping the manager is worth
		// seeing but changes no result.
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	if err := warmUp(); err != nil {
		fmt.Fprintf(os.Stderr, "warm-up: %v\n", err)
		return 1
	}
	return m.Run()
}

func identities() (err error) {
	if k8s, err = testenv.Client(testEnv, controlplane.Editor, "editor"); err != nil {
		return err
	}
	if agent, err = testenv.Client(testEnv, controlplane.Agent, "agent"); err != nil {
		return err
	}
	controllerIdentity, err = testenv.Client(testEnv, controlplane.Manager, "cel-walker")
	return err
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
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	rt := opsclient.NewFromClient(agent, ns, clock.RealClock{})
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
	if err := admin.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// newRegistry registers a fresh session in a fresh namespace and returns its registry.
func newRegistry(t *testing.T, sc opsclient.SessionConfig) (*opsclient.Runtime, *opsclient.Registry) {
	t.Helper()
	ctx := testContext(t)
	rt := opsclient.NewFromClient(agent, newNamespace(t), clock.RealClock{})
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

func writeKubeconfig(p controlplane.Persona, user string) (string, error) {
	kc, err := controlplane.KubeConfig(testEnv, p, user)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "envtest-kubeconfig-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(kc)
	return f.Name(), errors.Join(err, f.Close())
}
