package reliability

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/internal/manager"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// managerKubeconfigEnv, when set, makes the test binary a manager (see
// TestMain): a subprocess the tests can kill -9.
const managerKubeconfigEnv = "RELIABILITY_MANAGER_KUBECONFIG"

// fenceSeedEnv replays TestRejectionsAreFounded with a given seed.
const fenceSeedEnv = "RELIABILITY_FENCE_SEED"

// managerProcessOptions are those of startManager, for a manager subprocess.
func managerProcessOptions() manager.Options {
	return manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", Clock: clock.RealClock{},
		SessionConcurrency: 2, OperationConcurrency: 4, CountsInterval: 50 * time.Millisecond,
		GracefulShutdownTimeout: 10 * time.Second,
	}
}

// runManagerProcess runs a manager with the kubeconfig until SIGTERM, or
// until its stdin closes (the test process is gone). It prints "ready" once
// its caches have synced.
func runManagerProcess(kubeconfig string) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.QPS, c.Burst = 500, 1000 // as the in-process managers (testenv)
	mgr, err := manager.New(c, managerProcessOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	go func() {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			fmt.Println("ready")
		}
	}()
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// managerIdentity is who every manager of these tests runs as: a new user
// bound to the shipped manager role.
func managerIdentity() (*rest.Config, error) {
	return testenv.User(testEnv, controlplane.Manager, fmt.Sprintf("ops-operator-manager-%d", managerUsers.Add(1)))
}

var managerUsers atomic.Int64

// writeKubeconfig writes c as a kubeconfig file and returns its path.
func writeKubeconfig(t *testing.T, c *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken,
	}
	kc.Contexts["manager"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "manager"}
	kc.CurrentContext = "manager"
	path := filepath.Join(t.TempDir(), "manager.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// managerProc is a manager running as a subprocess of the test binary.
type managerProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	ready  chan struct{}
	exited chan struct{}
}

// startManagerProcess starts a manager subprocess; it does not wait for it.
func startManagerProcess(t *testing.T, kubeconfig, name string) *managerProc {
	t.Helper()
	p := &managerProc{name: name, log: filepath.Join(t.TempDir(), name+".log"), ready: make(chan struct{}), exited: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	out, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), managerKubeconfigEnv+"="+kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = outW, logFile
	// The child exits when this pipe closes, i.e. when the test process ends.
	if _, err := p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = outW.Close()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(p.ready)
			}
		}
		_ = out.Close()
	}()
	go func() {
		_ = p.cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *managerProc) waitReady(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("manager %s exited before it was ready: %s", p.name, p.logTail())
	case <-ctx.Done():
		t.Fatalf("manager %s not ready: %s", p.name, p.logTail())
	}
}

// kill is kill -9.
func (p *managerProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop asks the manager to shut down, and kills it if it does not.
func (p *managerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

func (p *managerProc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// illFounded is a MaxConcurrentExceeded rejection the session's active count
// never justified: it stayed below the limit from the operation's creation
// to its rejection.
type illFounded struct {
	name         string
	peak         int    // the highest active count in that window
	recorded     int32  // the active count the rejection states
	createdRV    string // resourceVersion of the creation event
	rejectedRV   string // and of the rejection event
	windowEvents int    // events in between
}

func (f illFounded) String() string {
	return fmt.Sprintf("%s (active at most %d between creation rv %s and rejection rv %s, %d events; rejection says active %d)",
		f.name, f.peak, f.createdRV, f.rejectedRV, f.windowEvents, f.recorded)
}

// fenceObserver follows a namespace's Operations through one watch, in the
// API server's (resourceVersion) order, and tracks the number of active
// operations after every event. For each Pending operation it keeps the
// highest active count since its creation event, and judges each
// MaxConcurrentExceeded rejection when its event arrives.
type fenceObserver struct {
	limit int

	mu         sync.Mutex
	phase      map[string]opsv1.OperationPhase
	active     int
	peak       int
	events     int
	window     map[string]*pendingWindow // Pending operations, by name
	admissions map[string]int
	rejected   int
	ill        []illFounded
	final      int
	rewatches  int
	watchErr   error
	admitted   chan string
}

type pendingWindow struct {
	peak      int
	createdRV string
	events    int
}

func watchFence(ctx context.Context, t *testing.T, ns string, limit, n int) *fenceObserver {
	t.Helper()
	o := &fenceObserver{
		limit: limit, phase: map[string]opsv1.OperationPhase{}, window: map[string]*pendingWindow{},
		admissions: map[string]int{}, admitted: make(chan string, 2*n),
	}
	var list opsv1.OperationList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Fatalf("namespace %s is not empty", ns)
	}
	rv := list.ResourceVersion
	w, err := k8s.Watch(ctx, &opsv1.OperationList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					o.mu.Lock()
					o.watchErr = fmt.Errorf("watch error: %v", ev.Object)
					o.mu.Unlock()
					continue
				}
				op, ok := ev.Object.(*opsv1.Operation)
				if !ok {
					continue
				}
				rv = op.ResourceVersion
				o.record(ev.Type, op)
			}
			w.Stop()
			if ctx.Err() != nil {
				return
			}
			// The server ended the watch (timeout): go on from the last
			// event, still in resourceVersion order.
			for ctx.Err() == nil {
				if w, err = k8s.Watch(ctx, &opsv1.OperationList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}}); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if ctx.Err() != nil {
				return
			}
			o.mu.Lock()
			o.rewatches++
			o.mu.Unlock()
		}
	}()
	return o
}

func (o *fenceObserver) record(typ watch.EventType, op *opsv1.Operation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events++
	name := op.Name
	prev, seen := o.phase[name]
	now := lifecycle.Normalize(op.Status.Phase)
	if typ == watch.Deleted {
		delete(o.phase, name)
		delete(o.window, name)
		if lifecycle.IsActive(prev) {
			o.active--
		}
		return
	}
	o.phase[name] = now
	switch {
	case lifecycle.IsActive(now) && !lifecycle.IsActive(prev):
		o.active++
	case !lifecycle.IsActive(now) && lifecycle.IsActive(prev):
		o.active--
	}
	o.peak = max(o.peak, o.active)
	if !seen && now == opsv1.PhasePending {
		o.window[name] = &pendingWindow{peak: o.active, createdRV: op.ResourceVersion}
	}
	for _, w := range o.window {
		w.peak = max(w.peak, o.active)
		w.events++
	}
	if now == opsv1.PhaseProvisioning && prev != opsv1.PhaseProvisioning {
		o.admissions[name]++
		select {
		case o.admitted <- name:
		default:
		}
	}
	if lifecycle.IsFinal(now) && !lifecycle.IsFinal(prev) {
		o.final++
	}
	if now == opsv1.PhaseRejected && prev != opsv1.PhaseRejected {
		if rej := op.Status.Rejection; rej != nil && rej.Reason == opsv1.RejectionMaxConcurrentExceeded {
			o.rejected++
			w := o.window[name]
			if w == nil || w.peak < o.limit {
				f := illFounded{name: name, rejectedRV: op.ResourceVersion, recorded: ptr.Deref(rej.Active, -1)}
				if w != nil {
					f.peak, f.createdRV, f.windowEvents = w.peak, w.createdRV, w.events
				}
				o.ill = append(o.ill, f)
			}
		}
	}
	if now != opsv1.PhasePending {
		delete(o.window, name)
	}
}

type fenceFigures struct {
	final, rejected, admitted, peak, events, rewatches int
	ill                                                []illFounded
	admittedTwice                                      []string
	watchErr                                           error
}

func (o *fenceObserver) figures() fenceFigures {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := fenceFigures{final: o.final, rejected: o.rejected, admitted: len(o.admissions), peak: o.peak,
		events: o.events, rewatches: o.rewatches, ill: slices.Clone(o.ill), watchErr: o.watchErr}
	for name, n := range o.admissions {
		if n > 1 {
			f.admittedTwice = append(f.admittedTwice, name)
		}
	}
	return f
}

// fenceRound is one round's randomised setting.
type fenceRound struct {
	ops, creators, agents int
	agentDelay            time.Duration // between an agent's two writes
	killAt                int           // kill -9 a manager once this many are created; 0: none
}

// TestRejectionsAreFounded: rounds of a few hundred Operations created at
// once against maxConcurrent 5 with the Reject policy, two manager processes
// at once and no leader election, agents completing each admitted operation
// quickly so slots keep freeing, and in some rounds a kill -9 of one manager
// mid-burst (a new one replaces it). An observer following the namespace in
// the API server's order checks every MaxConcurrentExceeded rejection: at
// some moment between the operation's creation and its rejection, the
// session had at least 5 active. Nothing may be admitted past 5 either.
func TestRejectionsAreFounded(t *testing.T) {
	ctx := testContext(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(fenceSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	rounds := 8
	if s := os.Getenv("RELIABILITY_FENCE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (%s=%d to replay)", seed, fenceSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))

	identity, err := managerIdentity()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, identity)
	started := 0
	start := func() *managerProc {
		started++
		return startManagerProcess(t, kubeconfig, fmt.Sprintf("manager-%d", started))
	}
	mgrs := []*managerProc{start(), start()}
	defer func() {
		for _, m := range mgrs {
			m.stop()
		}
	}()

	var total fenceFigures
	kills, illRounds := 0, 0
	for round := 1; round <= rounds; round++ {
		for _, m := range mgrs {
			m.waitReady(ctx, t)
		}
		r := fenceRound{
			ops: 150 + rng.IntN(201), creators: 4 + rng.IntN(13), agents: 1 + rng.IntN(12),
			agentDelay: time.Duration(rng.IntN(4)*rng.IntN(6)) * time.Millisecond,
		}
		if rng.IntN(5) < 2 {
			r.killAt = r.ops/10 + rng.IntN(r.ops*8/10)
			kills++
		}
		victim := rng.IntN(2)
		f := runFenceRound(ctx, t, r, mgrs[victim].kill, func() { mgrs[victim] = start() })
		t.Logf("round %d: ops=%d creators=%d agents=%d agentDelay=%s killAt=%d: admitted=%d rejected=%d ill-founded=%d peakActive=%d events=%d",
			round, r.ops, r.creators, r.agents, r.agentDelay, r.killAt, f.admitted, f.rejected, len(f.ill), f.peak, f.events)
		if len(f.ill) > 0 {
			illRounds++
			var lines []string
			for i, x := range f.ill {
				if i == 10 {
					lines = append(lines, fmt.Sprintf("... and %d more", len(f.ill)-10))
					break
				}
				lines = append(lines, x.String())
			}
			t.Errorf("round %d: %d of %d rejections were ill-founded:\n  %s", round, len(f.ill), f.rejected, strings.Join(lines, "\n  "))
		}
		if f.peak > queueOf5 {
			t.Errorf("round %d: %d active at once, limit %d", round, f.peak, queueOf5)
		}
		if len(f.admittedTwice) > 0 {
			t.Errorf("round %d: admitted twice: %v", round, f.admittedTwice)
		}
		if f.watchErr != nil {
			t.Errorf("round %d: %v", round, f.watchErr)
		}
		total.rejected += f.rejected
		total.admitted += f.admitted
		total.ill = append(total.ill, f.ill...)
		total.peak = max(total.peak, f.peak)
	}
	t.Logf("rounds=%d managers=2 kills=%d admitted=%d rejected=%d ill-founded=%d (in %d rounds) peakActive=%d",
		rounds, kills, total.admitted, total.rejected, len(total.ill), illRounds, total.peak)
	if !t.Failed() && total.rejected == 0 {
		t.Errorf("no round rejected anything: the rounds did not exercise rejections")
	}
}

// runFenceRound runs one round in a new namespace and returns what the
// observer saw once every operation is final. kill runs mid-burst when the
// round has a killAt, replace once the burst is created.
func runFenceRound(ctx context.Context, t *testing.T, r fenceRound, kill, replace func()) fenceFigures {
	t.Helper()
	ns := newNamespace(t)
	reg := newSession(ctx, t, ns, "fence", opsv1.OpsSessionSpec{
		MaxConcurrent: ptr.To[int32](queueOf5), MaxCompleted: ptr.To[int32](1000), AdmissionPolicy: opsv1.AdmissionReject,
	})
	obs := watchFence(ctx, t, ns, queueOf5, r.ops)
	roundCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	errs := make(chan error, 2*r.ops)
	for range r.agents {
		go func() {
			for {
				select {
				case <-roundCtx.Done():
					return
				case id := <-obs.admitted:
					if err := reg.ProvisioningSucceeded(roundCtx, id); err != nil {
						errs <- fmt.Errorf("provisioning %s: %w", id, err)
						continue
					}
					if r.agentDelay > 0 {
						time.Sleep(r.agentDelay)
					}
					if err := reg.CompleteOperation(roundCtx, id, opsv1.OperationResult{Content: "ok"}); err != nil {
						errs <- fmt.Errorf("completing %s: %w", id, err)
					}
				}
			}
		}()
	}

	var created atomic.Int64
	killed := make(chan struct{})
	if r.killAt > 0 {
		go func() {
			defer close(killed)
			for created.Load() < int64(r.killAt) && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			kill()
		}()
	} else {
		close(killed)
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	createErrs := make(chan error, r.ops)
	for range r.creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < r.ops; i = int(next.Add(1)) - 1 {
				op := &opsv1.Operation{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("op-%04d", i), Namespace: ns,
						Annotations: map[string]string{opsv1.AnnotationCreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}},
					Spec: opsv1.OperationSpec{SessionName: "fence", Kind: opsv1.BackgroundToolOp},
				}
				if err := k8s.Create(ctx, op); err != nil {
					createErrs <- err
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	<-killed
	if r.killAt > 0 {
		replace() // while the round settles
	}
	close(createErrs)
	for err := range createErrs {
		t.Fatalf("creating operations: %v", err)
	}

	// Every operation ends Completed or Rejected.
	deadline, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for obs.figures().final < r.ops {
		select {
		case <-deadline.Done():
			f := obs.figures()
			t.Fatalf("%d of %d operations final after 2 minutes (admitted %d, rejected %d)", f.final, r.ops, f.admitted, f.rejected)
		case err := <-errs:
			t.Fatalf("agent: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("agent: %v", err)
	default:
	}
	return obs.figures()
}
