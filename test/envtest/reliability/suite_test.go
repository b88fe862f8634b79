// Package reliability checks admission, retention and termination under
// racing creates, restarts and two managers at once, against a real
// kube-apiserver and etcd. Each test starts and stops its own managers.
package reliability

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/internal/manager"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// Identities: system:masters (cfg, admin) only installs the CRDs, the
// policy and the roles and creates namespaces; managers run as the manager
// role, agents as the agent role, and the tests look on as a person.
var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	admin   client.WithWatch
	// k8s is a person with the editor role.
	k8s client.WithWatch
	// agent is an agent with the agent role, for the registries.
	agent client.WithWatch
	// controllerIdentity has the manager role, for reconcilers driven by hand.
	controllerIdentity client.WithWatch
	nsCounter          atomic.Int64
)

func TestMain(m *testing.M) {
	if kubeconfig := os.Getenv(managerKubeconfigEnv); kubeconfig != "" {
		os.Exit(runManagerProcess(kubeconfig)) // a manager subprocess (rejection_fence_test.go), not the tests
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	env, c, wc, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	testEnv, cfg, admin = env, c, wc
	if k8s, err = testenv.Client(env, controlplane.Editor, "editor"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if agent, err = testenv.Client(env, controlplane.Agent, "agent"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if controllerIdentity, err = testenv.Client(env, controlplane.Manager, "controller-by-hand"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// runningManager is one manager instance; stop ends it and waits.
type runningManager struct {
	cancel context.CancelFunc
	done   chan error
}

func (r *runningManager) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("manager: %v", err)
	}
}

// startManager starts a manager with no leader election: two of them at once
// is exactly the case where leader election is no fence.
func startManager(t *testing.T) *runningManager {
	t.Helper()
	mgrCfg, err := managerIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return startManagerAs(t, mgrCfg, func(*manager.Options) {})
}

// startManagerAs starts a manager as the identity of mgrCfg, with the tests'
// options as amended by opts.
func startManagerAs(t *testing.T, mgrCfg *rest.Config, opts func(*manager.Options)) *runningManager {
	t.Helper()
	o := manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", Clock: clock.RealClock{}, SkipNameValidation: true,
		SessionConcurrency: 2, OperationConcurrency: 4, CountsInterval: 50 * time.Millisecond,
		GracefulShutdownTimeout: 10 * time.Second,
	}
	opts(&o)
	mgr, err := manager.New(mgrCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningManager{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- mgr.Start(ctx) }()
	return r
}

func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("r%03d", nsCounter.Add(1))
	if err := admin.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// observer watches every status change of the Operations in a namespace, in
// the API server's order, and keeps the figures the tests assert on.
type observer struct {
	mu         sync.Mutex
	phase      map[string]opsv1.OperationPhase
	admissions map[string]int
	peakActive int
	// admitted receives each operation's name when it turns Provisioning.
	admitted chan string
}

func observe(ctx context.Context, t *testing.T, ns string) *observer {
	t.Helper()
	o := &observer{phase: map[string]opsv1.OperationPhase{}, admissions: map[string]int{}, admitted: make(chan string, 10000)}
	var list opsv1.OperationList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		o.record(&list.Items[i], false)
	}
	rv := list.ResourceVersion
	go func() {
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &opsv1.OperationList{}, client.InNamespace(ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				op, ok := ev.Object.(*opsv1.Operation)
				if !ok {
					continue
				}
				rv = op.ResourceVersion
				o.record(op, ev.Type == watch.Deleted)
			}
			w.Stop()
		}
	}()
	return o
}

func (o *observer) record(op *opsv1.Operation, deleted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	prev := o.phase[op.Name]
	now := lifecycle.Normalize(op.Status.Phase)
	if deleted {
		delete(o.phase, op.Name)
		return
	}
	o.phase[op.Name] = now
	if now == opsv1.PhaseProvisioning && prev != opsv1.PhaseProvisioning {
		o.admissions[op.Name]++
		o.admitted <- op.Name
	}
	active := 0
	for _, p := range o.phase {
		if lifecycle.IsActive(p) {
			active++
		}
	}
	o.peakActive = max(o.peakActive, active)
}

func (o *observer) counts() (byPhase map[opsv1.OperationPhase]int, peak int, admittedTwice []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	byPhase = map[opsv1.OperationPhase]int{}
	for _, p := range o.phase {
		byPhase[p]++
	}
	for name, n := range o.admissions {
		if n > 1 {
			admittedTwice = append(admittedTwice, name)
		}
	}
	return byPhase, o.peakActive, admittedTwice
}

// agents complete every operation the observer sees admitted.
func agents(ctx context.Context, n int, reg *opsclient.Registry, o *observer, errs chan<- error) {
	for range n {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-o.admitted:
					if err := reg.ProvisioningSucceeded(ctx, id); err != nil {
						errs <- fmt.Errorf("provisioning %s: %w", id, err)
						continue
					}
					if err := reg.CompleteOperation(ctx, id, opsv1.OperationResult{Content: "ok"}); err != nil {
						errs <- fmt.Errorf("completing %s: %w", id, err)
					}
				}
			}
		}()
	}
}

// newSession creates session name in ns as the editor and returns an
// agent's registry for it (its runtime closes when the test ends).
func newSession(ctx context.Context, t *testing.T, ns, name string, spec opsv1.OpsSessionSpec) *opsclient.Registry {
	t.Helper()
	s := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	rt := opsclient.NewFromClient(agent, ns, clock.RealClock{})
	t.Cleanup(rt.Close)
	reg, err := rt.OpsLifecycleRegistry(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// createOps creates n Operations with `workers` goroutines, as fast as they go.
func createOps(ctx context.Context, t *testing.T, ns, session string, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := atomic.Int64{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				op := &opsv1.Operation{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("op-%04d", i), Namespace: ns,
						Annotations: map[string]string{opsv1.AnnotationCreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}},
					Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp, DisplayName: fmt.Sprintf("op %d", i)},
				}
				if err := k8s.Create(ctx, op); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("creating operations: %v", err)
	}
}
