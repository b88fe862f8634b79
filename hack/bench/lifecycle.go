package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// LifecycleResult is one lifecycle phase: S sessions × N operations run by
// C agent goroutines, optionally paced to a target rate.
type LifecycleResult struct {
	Name          string  `json:"name"`
	Concurrency   int     `json:"concurrency"`
	TargetRate    float64 `json:"targetRate,omitempty"`
	Sessions      int     `json:"sessions"`
	OpsPerSession int     `json:"opsPerSession"`
	Progress      int     `json:"progress"`
	MaxCompleted  int     `json:"maxCompleted"`

	// ProgressInterval and ProgressOver: -progress-interval, -progress-over.
	ProgressInterval string `json:"progressInterval,omitempty"`
	ProgressOver     string `json:"progressOver,omitempty"`

	Lifecycles    int    `json:"lifecycles"`
	Failed        int    `json:"failed"`
	FailureSample string `json:"failureSample,omitempty"`
	// Seconds runs from the first registration until the last lifecycle
	// finished and retention evicted every operation it should.
	Seconds          float64 `json:"seconds"`
	DrainSeconds     float64 `json:"drainSeconds"`
	LifecyclesPerSec float64 `json:"lifecyclesPerSec"`

	// Admission is measured by the agent: from just before the Operation's
	// create until RegisterOperation returned (it waits for admission).
	Admission Latency `json:"admission"`
	// Notification: from the moment CompleteOperation's status write was
	// sent (status.completedAt is set just before) until the watcher
	// registered earlier (RegisterWatcher, Wait in its own goroutine) returned.
	Notification Latency `json:"notification"`
	// NotificationAfterReturn: from CompleteOperation returning instead.
	// When the watch event beats the write's response it counts as 0, and
	// in NotifiedBeforeWriteReturned.
	NotificationAfterReturn     Latency `json:"notificationAfterReturn"`
	NotifiedBeforeWriteReturned int     `json:"notifiedBeforeWriteReturned"`
	// AgentWriteRTT: each agent write's round trip (request sent to response
	// read), all kinds together; admission contains two writes.
	AgentWriteRTT Latency `json:"agentWriteRTT"`

	AgentWritesPerLifecycle     float64 `json:"agentWritesPerLifecycle"`
	AgentReadsPerLifecycle      float64 `json:"agentReadsPerLifecycle"`
	AgentWatchesPerLifecycle    float64 `json:"agentWatchesPerLifecycle"`
	AgentConflictsPerLifecycle  float64 `json:"agentConflictsPerLifecycle"`
	ManagerWritesPerLifecycle   float64 `json:"managerWritesPerLifecycle"`
	ManagerConflictsPerLifecyle float64 `json:"managerConflictsPerLifecycle"`
	// ManagerRequestsPerLifecycle is by HTTP method: POST is Events, PUT
	// status and finalizer updates, DELETE retention, GET reads and watches.
	ManagerRequestsPerLifecycle map[string]float64 `json:"managerRequestsPerLifecycle"`
	WritesPerLifecycle          float64            `json:"writesPerLifecycle"`

	// WriteThroughput is agents' and manager's writes per second over Seconds.
	WriteThroughput     float64 `json:"writeThroughput"`
	CeilingWritesPerSec float64 `json:"ceilingWritesPerSec"`
	RatioToCeiling      float64 `json:"ratioToCeiling"`

	ManagerCPUSeconds        float64 `json:"managerCPUSeconds"`
	ManagerCPUPerLifecycleMs float64 `json:"managerCPUPerLifecycleMs"`
	ManagerCores             float64 `json:"managerCores"`
	ManagerRSSMiB            float64 `json:"managerRSSMiB"`
	ManagerPeakRSSMiB        float64 `json:"managerPeakRSSMiB"`
	APIServerCores           float64 `json:"apiserverCores"`
	EtcdCores                float64 `json:"etcdCores"`
	BenchCores               float64 `json:"benchCores"`
	// OtherCores: the rest of the machine meanwhile (noise).
	OtherCores float64 `json:"otherCores"`
}

// snap is the counters at one instant.
type snap struct {
	at    time.Time
	agent requestCounts
	mgr   clientRequests
	mproc procSample
	api   procSample
	etcd  procSample
	self  procSample
	busy  float64
}

func (b *bench) snapshot(ctx context.Context) (snap, error) {
	ss, err := b.mgr.scrape(ctx)
	if err != nil {
		return snap{}, fmt.Errorf("scraping the manager: %w", err)
	}
	return snap{
		at: time.Now(), agent: b.agentCounter.snapshot(), mgr: managerRequests(ss),
		mproc: readProc(b.mgr.pid()), api: readProc(childPID("kube-apiserver")),
		etcd: readProc(childPID("etcd")), self: readProc(selfPID), busy: machineBusy(),
	}, nil
}

type lcSample struct {
	admission, notify, notifyAfterReturn time.Duration
	early                                bool
	err                                  error
}

// lifecycles runs one phase in a fresh namespace bench-<name>.
func (b *bench) lifecycles(ctx context.Context, name string, c, nSessions, perSession int, targetRate float64, profileSeconds int) (LifecycleResult, error) {
	cfg := b.cfg
	if b.mgr.exited() {
		return LifecycleResult{}, fmt.Errorf("the manager exited; see %s", b.mgr.logPath)
	}
	ns := "bench-" + name
	if err := b.ensureNamespace(ctx, ns); err != nil {
		return LifecycleResult{}, err
	}
	rt := opsclient.NewFromClient(b.agent, ns, clock.RealClock{}, opsclient.WithProgressInterval(cfg.progressInterval))
	defer rt.Close() // stops the registries' session watches
	sc := opsclient.SessionConfig{MaxCompleted: ptr.To(int32(cfg.maxCompleted)), AdmissionPolicy: opsv1.AdmissionPolicy(cfg.policy)}
	if cfg.maxConcurrent >= 0 {
		sc.MaxConcurrent = ptr.To(int32(cfg.maxConcurrent))
	}
	regs := make([]*opsclient.Registry, nSessions)
	for i := range regs {
		id := fmt.Sprintf("s%02d", i)
		if err := rt.RegisterSession(ctx, id, sc); err != nil {
			return LifecycleResult{}, err
		}
		reg, err := rt.OpsLifecycleRegistry(ctx, id)
		if err != nil {
			return LifecycleResult{}, err
		}
		regs[i] = reg
	}
	// The sessions' own set-up writes (finalizer, first status) happen before
	// the counters are read.
	b.waitSessionsReady(ctx, ns, nSessions)

	total := nSessions * perSession
	samples := make([]lcSample, total)
	work := make(chan int, total)
	for i := range total {
		work <- i
	}
	close(work)
	var lim *rate.Limiter
	if targetRate > 0 {
		lim = rate.NewLimiter(rate.Limit(targetRate), 1)
	}
	logf("lifecycles %s: %d sessions × %d ops, C=%d, k=%d (over %s, coalescing interval %s)%s", name, nSessions, perSession, c, cfg.progress,
		cfg.progressOver, cfg.progressInterval, rateNote(targetRate))

	before, err := b.snapshot(ctx)
	if err != nil {
		return LifecycleResult{}, err
	}
	b.agentCounter.takeWriteRTTs() // from here on
	var profWG sync.WaitGroup
	if profileSeconds > 0 {
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			b.cpuProfile(ctx, profileSeconds)
		}()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if lim != nil && lim.Wait(ctx) != nil {
					samples[i].err = ctx.Err()
					continue
				}
				samples[i] = b.oneLifecycle(ctx, regs[i%nSessions], fmt.Sprintf("op-%05d", i), cfg.progress)
			}
		}()
	}
	wg.Wait()
	ran := time.Since(start)
	if err := ctx.Err(); err != nil {
		return LifecycleResult{}, err
	}
	// Retention: wait until every session is down to maxCompleted.
	opsList := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: opsv1.GroupVersion.String(), Kind: "OperationList"}}
	if err := b.waitEmpty(ctx, opsList, ns, nSessions*cfg.maxCompleted, 2*time.Minute); err != nil {
		return LifecycleResult{}, fmt.Errorf("waiting for retention: %w", err)
	}
	elapsed := time.Since(start)
	// Session count writes are rate-limited (--session-counts-interval); let
	// the trailing ones land so they are counted.
	time.Sleep(cfg.countsInterval + time.Second)
	after, err := b.snapshot(ctx)
	if err != nil {
		return LifecycleResult{}, err
	}
	profWG.Wait()

	r := LifecycleResult{
		Name: name, Concurrency: c, TargetRate: round(targetRate, 1), Sessions: nSessions, OpsPerSession: perSession,
		Progress: cfg.progress, ProgressInterval: cfg.progressInterval.String(), ProgressOver: cfg.progressOver.String(), MaxCompleted: cfg.maxCompleted,
		Seconds: round(elapsed.Seconds(), 2), DrainSeconds: round((elapsed - ran).Seconds(), 2),
	}
	var adm, ntf, ntfRet []time.Duration
	for _, s := range samples {
		if s.err != nil {
			r.Failed++
			if r.FailureSample == "" {
				r.FailureSample = s.err.Error()
			}
			continue
		}
		r.Lifecycles++
		adm, ntf, ntfRet = append(adm, s.admission), append(ntf, s.notify), append(ntfRet, s.notifyAfterReturn)
		if s.early {
			r.NotifiedBeforeWriteReturned++
		}
	}
	r.Admission, r.Notification, r.NotificationAfterReturn = summarize(adm), summarize(ntf), summarize(ntfRet)
	r.AgentWriteRTT = summarize(b.agentCounter.takeWriteRTTs())
	n := float64(max(r.Lifecycles, 1))
	el := elapsed.Seconds()
	r.LifecyclesPerSec = round(float64(r.Lifecycles)/el, 1)
	ad := after.agent.sub(before.agent)
	md := after.mgr.sub(before.mgr)
	r.AgentWritesPerLifecycle = round(float64(ad.writes())/n, 2)
	r.AgentReadsPerLifecycle = round(float64(ad.Get)/n, 2)
	r.AgentWatchesPerLifecycle = round(float64(ad.Watch)/n, 2)
	r.AgentConflictsPerLifecycle = round(float64(ad.Conflicts)/n, 3)
	r.ManagerWritesPerLifecycle = round(md.writes()/n, 2)
	r.ManagerConflictsPerLifecyle = round(md.Conflicts/n, 3)
	r.ManagerRequestsPerLifecycle = map[string]float64{}
	for m, v := range md.ByMethod {
		if v != 0 {
			r.ManagerRequestsPerLifecycle[m] = round(v/n, 2)
		}
	}
	r.WritesPerLifecycle = round(r.AgentWritesPerLifecycle+r.ManagerWritesPerLifecycle, 2)
	r.WriteThroughput = round((float64(ad.writes())+md.writes())/el, 1)
	for _, ce := range b.res.Ceiling {
		if ce.Concurrency == c {
			r.CeilingWritesPerSec = ce.WritesPerSec
			r.RatioToCeiling = round(r.WriteThroughput/ce.WritesPerSec, 3)
		}
	}
	cpu := after.mproc.CPU - before.mproc.CPU
	r.ManagerCPUSeconds = round(cpu, 2)
	r.ManagerCPUPerLifecycleMs = round(cpu*1000/n, 3)
	r.ManagerCores = round(cpu/el, 2)
	r.ManagerRSSMiB = round(mib(after.mproc.RSSKB), 1)
	r.ManagerPeakRSSMiB = round(mib(after.mproc.PeakKB), 1)
	r.APIServerCores = round((after.api.CPU-before.api.CPU)/el, 2)
	r.EtcdCores = round((after.etcd.CPU-before.etcd.CPU)/el, 2)
	r.BenchCores = round((after.self.CPU-before.self.CPU)/el, 2)
	ours := (after.api.CPU - before.api.CPU) + (after.etcd.CPU - before.etcd.CPU) + (after.self.CPU - before.self.CPU) + cpu
	r.OtherCores = round(max(0, after.busy-before.busy-ours)/after.at.Sub(before.at).Seconds(), 2)
	if r.Failed > 0 {
		logf("lifecycles %s: %d failed, e.g. %s", name, r.Failed, r.FailureSample)
	}
	return r, nil
}

func rateNote(r float64) string {
	if r <= 0 {
		return ""
	}
	return fmt.Sprintf(", paced at %.1f lifecycles/s", r)
}

// oneLifecycle is one agent's full lifecycle of one operation.
func (b *bench) oneLifecycle(ctx context.Context, reg *opsclient.Registry, id string, k int) (s lcSample) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp, DisplayName: id}); err != nil {
		s.err = fmt.Errorf("RegisterOperation %s: %w", id, err)
		return s
	}
	s.admission = time.Since(t0)
	w, err := reg.RegisterWatcher(ctx, id)
	if err != nil {
		s.err = fmt.Errorf("RegisterWatcher %s: %w", id, err)
		return s
	}
	type resolution struct {
		at  time.Time
		out opsclient.Outcome
		err error
	}
	resolved := make(chan resolution, 1)
	go func() {
		o, err := w.Wait(ctx)
		resolved <- resolution{time.Now(), o, err}
	}()
	if err := reg.ProvisioningSucceeded(ctx, id); err != nil {
		s.err = fmt.Errorf("ProvisioningSucceeded %s: %w", id, err)
		return s
	}
	for j := range k {
		p := float64(j+1) / float64(k+1)
		if err := reg.ReportProgress(ctx, id, opsclient.ProgressUpdate{Message: fmt.Sprintf("step %d of %d", j+1, k), Percent: &p}); err != nil {
			s.err = fmt.Errorf("ReportProgress %s: %w", id, err)
			return s
		}
		if b.cfg.progressOver > 0 {
			time.Sleep(b.cfg.progressOver / time.Duration(k))
		}
	}
	// The counting transport notes when the completing write is sent (the
	// last one, if a conflict made the client retry).
	var sent atomic.Int64
	cctx := context.WithValue(ctx, sentKey{}, &sent)
	if err := reg.CompleteOperation(cctx, id, opsv1.OperationResult{Content: "done", DurationMs: time.Since(t0).Milliseconds()}); err != nil {
		s.err = fmt.Errorf("CompleteOperation %s: %w", id, err)
		return s
	}
	wrote := time.Now()
	res := <-resolved
	switch {
	case res.err != nil:
		s.err = fmt.Errorf("watcher of %s: %w", id, res.err)
	case res.out.Type != opsv1.PhaseCompleted:
		s.err = fmt.Errorf("watcher of %s: outcome %s, want Completed", id, res.out.Type)
	}
	s.notify = res.at.Sub(time.Unix(0, sent.Load()))
	s.notifyAfterReturn = res.at.Sub(wrote)
	if s.notifyAfterReturn < 0 {
		s.notifyAfterReturn, s.early = 0, true
	}
	return s
}

// waitSessionsReady waits until the manager has reconciled every session in
// ns (status observed and Ready), for up to 30 s.
func (b *bench) waitSessionsReady(ctx context.Context, ns string, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < n; {
		s := &opsv1.OpsSession{}
		err := b.admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("s%02d", i)}, s)
		if err == nil && s.Status.ObservedGeneration >= s.Generation && meta.IsStatusConditionTrue(s.Status.Conditions, opsv1.ConditionReady) {
			i++
			continue
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			logf("warning: session %s/s%02d not reconciled after 30s (%v)", ns, i, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpuProfile saves CPU profiles of kube-apiserver (its /debug/pprof, as
// system:masters) and of the manager when it serves pprof, taken together.
func (b *bench) cpuProfile(ctx context.Context, seconds int) {
	var wg sync.WaitGroup
	if b.mgr.pprofAddr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.mgr.pprofAddr, seconds)
			saveProfile(ctx, http.DefaultClient, url, filepath.Join(b.resultsDir, "manager-cpu.pprof"))
		}()
	}
	if hc, err := rest.HTTPClientFor(b.cl.cfg); err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(b.cl.cfg.Host, "/"), seconds)
			saveProfile(ctx, hc, url, filepath.Join(b.resultsDir, "apiserver-cpu.pprof"))
		}()
	}
	wg.Wait()
}

func saveProfile(ctx context.Context, hc *http.Client, url, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		logf("pprof %s: %v", url, err)
		return
	}
	// Only read: the profile's errors are io.Copy's.
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		logf("pprof %s: %s", url, resp.Status)
		return
	}
	f, err := os.Create(path)
	if err != nil {
		logf("pprof: %v", err)
		return
	}
	_, err = io.Copy(f, resp.Body)
	if errors.Is(err, context.Canceled) {
		err = nil // the bench was interrupted: the file keeps what arrived
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		logf("pprof: %v", err)
		return
	}
	logf("CPU profile written to %s", path)
}
