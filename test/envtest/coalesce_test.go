package envtest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// Progress coalescing (opsclient.WithProgressInterval) against the real API
// server, its CEL rules and the manager: a chatty agent's reports cost one
// write per interval, the written count is exact and the completing write
// holds the last report. The agent's clock is a fake one, so the intervals
// end when the test steps it, not when the machine gets round to it.

// statusWrites counts an agent's writes of Operation statuses, by object.
type statusWrites struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *statusWrites) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		p := req.URL.Path
		if (req.Method == http.MethodPut || req.Method == http.MethodPatch) && strings.Contains(p, "/operations/") && strings.HasSuffix(p, "/status") {
			name := strings.TrimSuffix(p[strings.LastIndex(p, "/operations/")+len("/operations/"):], "/status")
			s.mu.Lock()
			s.n[name]++
			s.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (s *statusWrites) of(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[name]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingRegistry is a registry of a fresh session whose agent's status
// writes are counted, on a fake clock set to now.
func countingRegistry(t *testing.T, opts ...opsclient.Option) (*opsclient.Registry, *statusWrites, *clocktesting.FakeClock) {
	t.Helper()
	ctx := testContext(t)
	cfg, err := testenv.User(testEnv, controlplane.Agent, fmt.Sprintf("coalesce-agent-%d", nsCounter.Load()))
	if err != nil {
		t.Fatal(err)
	}
	writes := &statusWrites{n: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = writes.wrap
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: opsclient.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now())
	rt := opsclient.NewFromClient(c, newNamespace(t), clk, opts...)
	t.Cleanup(rt.Close)
	id := opsclient.NewSessionID()
	if err := rt.RegisterSession(ctx, id, opsclient.SessionConfig{}); err != nil {
		t.Fatal(err)
	}
	reg, err := rt.OpsLifecycleRegistry(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return reg, writes, clk
}

// TestProgressCoalescedChattyAgent: k = 50 reports over 2 s of the agent's
// clock, at the default interval (1 s): provisioning succeeded, the first
// report, the reports of the first second in one write, and the rest in the
// completing write. 4 status writes instead of 52.
func TestProgressCoalescedChattyAgent(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	reg, writes, clk := countingRegistry(t)
	ns := reg.Namespace()
	spec := backgroundSpec("chatty")
	g.Expect(reg.RegisterOperation(ctx, spec)).To(Succeed())
	w, err := reg.RegisterWatcher(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reg.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())

	const k = 50
	for i := 1; i <= k; i++ {
		g.Expect(reg.ReportProgress(ctx, spec.ID, opsclient.ProgressUpdate{
			Message: fmt.Sprintf("chunk %d of %d", i, k), Percent: ptr.To(float64(i) / k)})).To(Succeed())
		if i == k {
			break
		}
		clk.Step(2 * time.Second / k)
		if i == 25 {
			// The first interval ended (t = 1 s): its write runs in the
			// background, with reports 2 to 25.
			g.Eventually(func() int64 {
				p := getOp(ctx, ns, spec.ID)().Status.Progress
				if p == nil {
					return 0
				}
				return p.Count
			}).Should(BeEquivalentTo(25))
		}
	}
	snap, err := reg.Snapshot(ctx, spec.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.ProgressCount).To(BeEquivalentTo(k), "the snapshot counts the reports not yet written")
	g.Expect(snap.ProgressMessage).To(Equal("chunk 50 of 50"))

	g.Expect(reg.CompleteOperation(ctx, spec.ID, opResult("streamed"))).To(Succeed())
	out, err := w.Wait(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(completedOutcome(opResult("streamed"))))

	op := getOp(ctx, ns, spec.ID)()
	g.Expect(op.Status.Phase).To(Equal(opsv1.PhaseCompleted))
	g.Expect(op.Status.Progress).NotTo(BeNil())
	g.Expect(op.Status.Progress.Count).To(BeEquivalentTo(k), "every report counted, the coalesced ones included")
	g.Expect(op.Status.Progress.Message).To(Equal("chunk 50 of 50"), "the final status holds the last report")
	g.Expect(op.Status.Progress.Percent).To(Equal(ptr.To(1.0)))
	g.Expect(writes.of(spec.ID)).To(Equal(4), "provisioning succeeded, the first report, one interval's reports, complete")
}

// TestProgressWriteThrough: with interval 0 every report is a write, as
// before coalescing; the counting above would see them.
func TestProgressWriteThrough(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	reg, writes, _ := countingRegistry(t, opsclient.WithProgressInterval(0))
	spec := backgroundSpec("write-through")
	g.Expect(reg.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(reg.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	const k = 10
	for i := 1; i <= k; i++ {
		g.Expect(reg.ReportProgress(ctx, spec.ID, opsclient.ProgressUpdate{Message: fmt.Sprint(i)})).To(Succeed())
	}
	g.Expect(reg.CompleteOperation(ctx, spec.ID, opResult("done"))).To(Succeed())
	g.Expect(writes.of(spec.ID)).To(Equal(k + 2))
	g.Expect(getOp(ctx, reg.Namespace(), spec.ID)().Status.Progress.Count).To(BeEquivalentTo(k))
}

// TestProgressCoalescedBeforeTerminateOwner: terminate_owner is the
// controller's write, which cannot carry an agent's reports, so the
// registry writes them first.
func TestProgressCoalescedBeforeTerminateOwner(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	reg, writes, _ := countingRegistry(t)
	spec := backgroundSpec("terminated")
	g.Expect(reg.RegisterOperation(ctx, spec)).To(Succeed())
	g.Expect(reg.ProvisioningSucceeded(ctx, spec.ID)).To(Succeed())
	for i := 1; i <= 3; i++ {
		g.Expect(reg.ReportProgress(ctx, spec.ID, opsclient.ProgressUpdate{Message: fmt.Sprint(i)})).To(Succeed())
	}
	g.Expect(writes.of(spec.ID)).To(Equal(2))
	g.Expect(reg.TerminateOwner(ctx, "mob disbanded")).To(Succeed())
	op := getOp(ctx, reg.Namespace(), spec.ID)()
	g.Expect(op.Status.Phase).To(Equal(opsv1.PhaseTerminated))
	g.Expect(op.Status.Progress.Count).To(BeEquivalentTo(3))
	g.Expect(op.Status.Progress.Message).To(Equal("3"))
}
