package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// ScaleResults holds the scale runs that were asked for.
type ScaleResults struct {
	Idle     *IdleResult     `json:"idle,omitempty"`
	Restart  *RestartResult  `json:"restart,omitempty"`
	Retained *RetainedResult `json:"retained,omitempty"`
}

// LoadResult is how the data set was written (with the manager stopped).
type LoadResult struct {
	Operations   int            `json:"operations"`
	Sessions     int            `json:"sessions"`
	ByPhase      map[string]int `json:"byPhase"`
	Seconds      float64        `json:"seconds"`
	WritesPerSec float64        `json:"writesPerSec"`
}

// RetainedResult: the manager restarted on many retained terminal operations.
type RetainedResult struct {
	Load LoadResult `json:"load"`
	// Times from the manager process's start.
	ReadySeconds         float64 `json:"readySeconds"`
	FreshAdmittedSeconds float64 `json:"freshAdmittedSeconds"`
	// Settled is measured after the fresh operation was admitted.
	Settled
	// One /metrics scrape: its meerkat_ops_operations gauge lists the cache.
	ScrapeMs               float64            `json:"scrapeMs"`
	RSSAfterScrapeMiB      float64            `json:"rssAfterScrapeMiB"`
	PeakRSSAfterScrapeMiB  float64            `json:"peakRSSAfterScrapeMiB"`
	WorkqueueDepth         float64            `json:"workqueueDepth"`
	ManagerRequestsAtStart map[string]float64 `json:"managerRequestsAtStart"`
	ManagerWritesAtStart   float64            `json:"managerWritesAtStart"`
	APIServerPeakRSSMiB    float64            `json:"apiserverPeakRSSMiB"`
	// ObjectBytes is one retained Operation's JSON size, managedFields included.
	ObjectBytes                     int `json:"objectBytes"`
	ObjectBytesWithoutManagedFields int `json:"objectBytesWithoutManagedFields"`
	// WithGOMEMLIMIT: the same data set after a second start of the manager
	// with -scale-retained-gomemlimit as its GOMEMLIMIT.
	WithGOMEMLIMIT *MemLimitResult `json:"withGOMEMLIMIT,omitempty"`
}

// Settled is the manager once its start-up work is done.
type Settled struct {
	// SettledSeconds: when its CPU use fell below 5% of a core over 1 s.
	SettledSeconds     float64 `json:"settledSeconds"`
	CPUSecondsToSettle float64 `json:"cpuSecondsToSettle"`
	// Memory at that point, before anything scraped /metrics.
	RSSMiB     float64 `json:"rssMiB"`
	PeakRSSMiB float64 `json:"peakRSSMiB"`
}

// settle waits until the manager is quiet and measures it.
func (b *bench) settle(ctx context.Context) (Settled, error) {
	settled, err := b.waitSettled(ctx, 10*time.Minute)
	if err != nil {
		return Settled{}, err
	}
	ps := readProc(b.mgr.pid())
	return Settled{
		SettledSeconds: round(settled.Seconds(), 2), CPUSecondsToSettle: round(ps.CPU, 2),
		RSSMiB: round(mib(ps.RSSKB), 1), PeakRSSMiB: round(mib(ps.PeakKB), 1),
	}, nil
}

// MemLimitResult is the manager's memory on the retained set under a GOMEMLIMIT.
type MemLimitResult struct {
	GOMEMLIMIT   string  `json:"gomemlimit"`
	ReadySeconds float64 `json:"readySeconds"`
	Settled
	// After one /metrics scrape.
	RSSAfterScrapeMiB     float64 `json:"rssAfterScrapeMiB"`
	PeakRSSAfterScrapeMiB float64 `json:"peakRSSAfterScrapeMiB"`
}

// RestartResult: the manager restarted on a backlog queued under Queue sessions.
type RestartResult struct {
	Load          LoadResult `json:"load"`
	MaxConcurrent int        `json:"maxConcurrent"`
	// Fits is how many queued operations the free slots admit; Queued how
	// many were Pending before the restart.
	Queued int `json:"queued"`
	Fits   int `json:"fits"`
	// Times from the manager process's start.
	ReadySeconds       float64 `json:"readySeconds"`
	FirstAdmitSeconds  float64 `json:"firstAdmitSeconds"`
	AllAdmittedSeconds float64 `json:"allAdmittedSeconds"`
	// Checked 3 s after the last admission, on a fresh list.
	Admitted     int                `json:"admitted"`
	OverAdmitted int                `json:"overAdmitted"`
	StillQueued  int                `json:"stillQueued"`
	FIFO         bool               `json:"fifo"`
	Requests     map[string]float64 `json:"managerRequests"`
	Writes       float64            `json:"managerWrites"`
	CPUSeconds   float64            `json:"managerCPUSeconds"`
	RSSMiB       float64            `json:"rssMiB"`
	PeakRSSMiB   float64            `json:"peakRSSMiB"`
}

// IdleResult: the manager's cost with many operations and nothing happening.
type IdleResult struct {
	Load                    LoadResult `json:"load"`
	SettledSeconds          float64    `json:"settledSeconds"`
	WindowSeconds           float64    `json:"windowSeconds"`
	CPUSeconds              float64    `json:"cpuSeconds"`
	CPUSecondsPerMinute     float64    `json:"cpuSecondsPerMinute"`
	APIServerCPUPerMinute   float64    `json:"apiserverCPUSecondsPerMinute"`
	EtcdCPUPerMinute        float64    `json:"etcdCPUSecondsPerMinute"`
	ManagerWritesInWindow   float64    `json:"managerWritesInWindow"`
	ManagerRequestsInWindow float64    `json:"managerRequestsInWindow"`
	RSSMiB                  float64    `json:"rssMiB"`
	PeakRSSMiB              float64    `json:"peakRSSMiB"`
}

const chunkLabel = "bench.meerkat.dev/chunk"

// loadSource is the source label of the operations load writes, and the
// reason of their transitions.
const loadSource = "bench"

// loadConcurrency is how many goroutines write a scale data set.
const loadConcurrency = 32

// sessionPlan is one session of a data set and the phases of its operations,
// in registration order.
type sessionPlan struct {
	name   string
	spec   opsv1.OpsSessionSpec
	phases []opsv1.OperationPhase
}

func opName(session string, i int) string { return fmt.Sprintf("%s-op-%05d", session, i) }

// load writes a data set with the manager stopped: each operation is
// created, then its status is written straight to the target phase through
// the lifecycle calls the manager and the agents would make (the CRD's CEL
// rules allow no shortcut: Pending reaches Completed in three status writes,
// Cancelled in one).
func (b *bench) load(ctx context.Context, ns string, plans []sessionPlan) (LoadResult, error) {
	if b.mgr.running() {
		b.mgr.stop()
	}
	if err := b.ensureNamespace(ctx, ns); err != nil {
		return LoadResult{}, err
	}
	b.scaleNamespaces = append(b.scaleNamespaces, ns)
	res := LoadResult{Sessions: len(plans), ByPhase: map[string]int{}}
	uids := map[string]types.UID{}
	for _, p := range plans {
		s := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name}, Spec: p.spec}
		if err := b.admin.Create(ctx, s); err != nil {
			return res, err
		}
		uids[p.name] = s.UID
		for _, ph := range p.phases {
			res.ByPhase[string(ph)]++
			res.Operations++
		}
	}
	type item struct {
		session string
		i       int
		phase   opsv1.OperationPhase
	}
	work := make(chan item, 1024)
	go func() {
		defer close(work)
		for i := 0; ; i++ {
			more := false
			for _, p := range plans {
				if i < len(p.phases) {
					more = true
					select {
					case work <- item{p.name, i, p.phases[i]}:
					case <-ctx.Done():
						return
					}
				}
			}
			if !more {
				return
			}
		}
	}()
	var done, writes atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				logf("  loaded %d/%d operations (%.0f writes/s)", done.Load(), res.Operations, float64(writes.Load())/time.Since(start).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for range loadConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				n, err := b.loadOne(ctx, ns, it.session, uids[it.session], it.i, it.phase)
				writes.Add(int64(n))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	el := time.Since(start).Seconds()
	res.Seconds, res.WritesPerSec = round(el, 1), round(float64(writes.Load())/el, 0)
	logf("  loaded %d operations in %.0fs (%.0f writes/s)", res.Operations, el, res.WritesPerSec)
	return res, nil
}

var loadCalls = map[opsv1.OperationPhase][]lifecycle.Call{
	opsv1.PhasePending:      nil,
	opsv1.PhaseProvisioning: {lifecycle.Admit},
	opsv1.PhaseRunning:      {lifecycle.Admit, lifecycle.ProvisioningSucceeded},
	opsv1.PhaseCompleted:    {lifecycle.Admit, lifecycle.ProvisioningSucceeded, lifecycle.CompleteOperation},
	opsv1.PhaseCancelled:    {lifecycle.CancelOperation},
}

func (b *bench) loadOne(ctx context.Context, ns, session string, uid types.UID, i int, phase opsv1.OperationPhase) (int, error) {
	name := opName(session, i)
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:      map[string]string{chunkLabel: strconv.Itoa(i / 1000)},
			Annotations: map[string]string{opsv1.AnnotationCreatedAt: time.Now().UTC().Format(time.RFC3339Nano)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: opsv1.GroupVersion.String(), Kind: opsSessionKind, Name: session, UID: uid, Controller: ptr.To(true),
			}},
		},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp, DisplayName: name, SourceLabel: loadSource},
	}
	if err := b.admin.Create(ctx, op); err != nil {
		return 0, fmt.Errorf("creating %s: %w", name, err)
	}
	writes := 1
	calls, ok := loadCalls[phase]
	if !ok {
		return writes, fmt.Errorf("the loader cannot make phase %s", phase)
	}
	reason := loadSource
	for _, c := range calls {
		a := lifecycle.Args{Reason: &reason}
		if c == lifecycle.CompleteOperation {
			a = lifecycle.Args{Result: &opsv1.OperationResult{Content: "done: " + name, DurationMs: 1234, TokensUsed: 567}}
		}
		if err := lifecycle.Apply(op, c, a, time.Now()); err != nil {
			return writes, err
		}
		if err := b.admin.Status().Update(ctx, op); err != nil {
			return writes, fmt.Errorf("%s on %s: %w", c.Action(), name, err)
		}
		writes++
	}
	return writes, nil
}

func terminalPhase(s string) opsv1.OperationPhase {
	if s == string(opsv1.PhaseCancelled) {
		return opsv1.PhaseCancelled
	}
	return opsv1.PhaseCompleted
}

// split spreads n operations over the sessions.
func split(n, sessions int) []int {
	out := make([]int, sessions)
	for i := range out {
		out[i] = n / sessions
		if i < n%sessions {
			out[i]++
		}
	}
	return out
}

// waitSettled waits until the manager's CPU use over the last second is
// below 5% of a core and returns when that quiet second began, from the
// process's start.
func (b *bench) waitSettled(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	type pt struct {
		at  time.Time
		cpu float64
	}
	var pts []pt
	deadline := time.Now().Add(timeout)
	for {
		now := time.Now()
		pts = append(pts, pt{now, readProc(b.mgr.pid()).CPU})
		for len(pts) > 1 && now.Sub(pts[1].at) >= time.Second {
			pts = pts[1:]
		}
		if first := pts[0]; now.Sub(first.at) >= time.Second && pts[len(pts)-1].cpu-first.cpu < 0.05 {
			return first.at.Sub(b.mgr.started), nil
		}
		if b.mgr.exited() {
			return 0, fmt.Errorf("the manager exited; see %s", b.mgr.logPath)
		}
		if now.After(deadline) {
			return 0, fmt.Errorf("manager still busy after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *bench) scaleResults() *ScaleResults {
	if b.res.Scale == nil {
		b.res.Scale = &ScaleResults{}
	}
	return b.res.Scale
}

// scaleRetained: n terminal operations retained in one namespace; restart
// the manager; measure its start-up and memory.
func (b *bench) scaleRetained(ctx context.Context, n int) error {
	logf("scale-retained: %d %s operations over %d sessions", n, b.cfg.scaleTerminal, b.cfg.scaleSessions)
	ns := "bench-scale-retained"
	perSession := split(n, b.cfg.scaleSessions)
	plans := make([]sessionPlan, 0, len(perSession))
	for i, per := range perSession {
		phases := make([]opsv1.OperationPhase, per)
		for j := range phases {
			phases[j] = terminalPhase(b.cfg.scaleTerminal)
		}
		plans = append(plans, sessionPlan{
			name: fmt.Sprintf("r%02d", i), phases: phases,
			spec: opsv1.OpsSessionSpec{MaxCompleted: ptr.To(int32(per + 1))},
		})
	}
	load, err := b.load(ctx, ns, plans)
	if err != nil {
		return fmt.Errorf("scale-retained load: %w", err)
	}
	r := &RetainedResult{Load: load}
	b.scaleResults().Retained = r
	sampleOp := &opsv1.Operation{}
	if err := b.admin.Get(ctx, types.NamespacedName{Namespace: ns, Name: opName(plans[0].name, 0)}, sampleOp); err == nil {
		if data, err := json.Marshal(sampleOp); err == nil {
			r.ObjectBytes = len(data)
			_ = os.WriteFile(filepath.Join(b.resultsDir, "retained-operation.json"), data, 0o644)
		}
		sampleOp.ManagedFields = nil
		if data, err := json.Marshal(sampleOp); err == nil {
			r.ObjectBytesWithoutManagedFields = len(data)
		}
	}

	rt := opsclient.NewFromClient(b.agent, ns, clock.RealClock{})
	defer rt.Close()
	reg, err := rt.OpsLifecycleRegistry(ctx, plans[0].name)
	if err != nil {
		return err
	}
	if err := b.mgr.start(); err != nil {
		return err
	}
	t0 := b.mgr.started
	admitted := make(chan error, 1)
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var admittedAt time.Time
	go func() {
		err := reg.RegisterOperation(actx, opsclient.OperationSpec{ID: "fresh", Kind: opsv1.BackgroundToolOp})
		admittedAt = time.Now()
		admitted <- err
	}()
	ready, err := b.mgr.waitReady(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	r.ReadySeconds = round(ready.Seconds(), 2)
	if err := <-admitted; err != nil {
		return fmt.Errorf("fresh operation: %w", err)
	}
	r.FreshAdmittedSeconds = round(admittedAt.Sub(t0).Seconds(), 2)
	if r.Settled, err = b.settle(ctx); err != nil {
		return err
	}
	if b.mgr.pprofAddr != "" {
		saveProfile(ctx, http.DefaultClient, "http://"+b.mgr.pprofAddr+"/debug/pprof/heap", filepath.Join(b.resultsDir, "manager-heap-retained.pprof"))
	}
	r.APIServerPeakRSSMiB = round(mib(readProc(childPID("kube-apiserver")).PeakKB), 1)
	st := time.Now()
	ss, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	r.ScrapeMs = ms(time.Since(st))
	ps := readProc(b.mgr.pid())
	r.RSSAfterScrapeMiB, r.PeakRSSAfterScrapeMiB = round(mib(ps.RSSKB), 1), round(mib(ps.PeakKB), 1)
	r.WorkqueueDepth = gauge(ss, "workqueue_depth", nil)
	mr := managerRequests(ss)
	r.ManagerRequestsAtStart, r.ManagerWritesAtStart = mr.ByMethod, mr.writes()
	logf("scale-retained %d: ready %.2fs, fresh op admitted %.2fs, settled %.2fs (%.1f CPU s); RSS %.0f MiB (peak %.0f); "+
		"one /metrics scrape %.0f ms, then RSS %.0f MiB (peak %.0f)",
		n, r.ReadySeconds, r.FreshAdmittedSeconds, r.SettledSeconds, r.CPUSecondsToSettle, r.RSSMiB, r.PeakRSSMiB,
		r.ScrapeMs, r.RSSAfterScrapeMiB, r.PeakRSSAfterScrapeMiB)
	if lim := b.cfg.scaleRetainedGOMEMLIMIT; lim != "" {
		return b.retainedUnderMemLimit(ctx, r, lim)
	}
	return nil
}

// retainedUnderMemLimit restarts the manager with GOMEMLIMIT=lim on the
// same retained set and measures its memory again once it settled.
func (b *bench) retainedUnderMemLimit(ctx context.Context, r *RetainedResult, lim string) error {
	b.mgr.stop()
	env := b.mgr.env
	b.mgr.env = append(append([]string{}, env...), "GOMEMLIMIT="+lim)
	defer func() { b.mgr.env = env }()
	if err := b.mgr.start(); err != nil {
		return err
	}
	m := &MemLimitResult{GOMEMLIMIT: lim}
	r.WithGOMEMLIMIT = m
	ready, err := b.mgr.waitReady(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	m.ReadySeconds = round(ready.Seconds(), 2)
	if m.Settled, err = b.settle(ctx); err != nil {
		return err
	}
	if _, err := b.mgr.scrape(ctx); err != nil {
		return err
	}
	ps := readProc(b.mgr.pid())
	m.RSSAfterScrapeMiB, m.PeakRSSAfterScrapeMiB = round(mib(ps.RSSKB), 1), round(mib(ps.PeakKB), 1)
	logf("scale-retained with GOMEMLIMIT=%s: ready %.2fs, settled %.2fs (%.1f CPU s); RSS %.0f MiB (peak %.0f); after a scrape RSS %.0f MiB (peak %.0f)",
		lim, m.ReadySeconds, m.SettledSeconds, m.CPUSecondsToSettle, m.RSSMiB, m.PeakRSSMiB, m.RSSAfterScrapeMiB, m.PeakRSSAfterScrapeMiB)
	return nil
}

// scaleRestart: n operations in mixed phases, Pending ones queued under
// Queue sessions; restart the manager; time until every queued operation
// that fits is admitted, and check none too many and in FIFO order.
func (b *bench) scaleRestart(ctx context.Context, n int) error {
	ns := "bench-scale-restart"
	q := b.planRestartQueue(n)
	logf("scale-restart: %d operations over %d Queue sessions, %d queued of which %d fit", n, len(q.plans), q.queued, q.fits)
	load, err := b.load(ctx, ns, q.plans)
	if err != nil {
		return fmt.Errorf("scale-restart load: %w", err)
	}
	r := &RestartResult{Load: load, MaxConcurrent: q.limit[q.plans[0].name], Queued: q.queued, Fits: q.fits}
	b.scaleResults().Restart = r

	pending := q.pending()
	var list opsv1.OperationList
	if err := b.admin.List(ctx, &list, client.InNamespace(ns), client.Limit(1)); err != nil {
		return err
	}
	if err := b.mgr.start(); err != nil {
		return err
	}
	t0 := b.mgr.started
	readyCh := make(chan error, 1)
	go func() {
		d, err := b.mgr.waitReady(ctx, 5*time.Minute)
		r.ReadySeconds = round(d.Seconds(), 2)
		readyCh <- err
	}()
	if err := b.waitQueueAdmitted(ctx, ns, list.ResourceVersion, pending, q.fits, t0, r); err != nil {
		return err
	}
	r.AllAdmittedSeconds = round(time.Since(t0).Seconds(), 2)
	if err := <-readyCh; err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // anything more would be over-admission
	ps := readProc(b.mgr.pid())
	r.CPUSeconds, r.RSSMiB, r.PeakRSSMiB = round(ps.CPU, 2), round(mib(ps.RSSKB), 1), round(mib(ps.PeakKB), 1)
	ss, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	mr := managerRequests(ss)
	r.Requests, r.Writes = mr.ByMethod, mr.writes()

	if err := b.checkQueueOutcome(ctx, ns, q, r); err != nil {
		return err
	}
	logf("scale-restart %d: ready %.2fs, first admission %.2fs, all %d admitted %.2fs; over-admitted %d, still queued %d, FIFO %v; "+
		"manager %.0f writes, %.1f CPU s, RSS %.0f MiB (peak %.0f)",
		n, r.ReadySeconds, r.FirstAdmitSeconds, r.Admitted, r.AllAdmittedSeconds, r.OverAdmitted, r.StillQueued, r.FIFO,
		r.Writes, r.CPUSeconds, r.RSSMiB, r.PeakRSSMiB)
	return nil
}

// restartQueue is scaleRestart's data set: its sessions, each session's
// maxConcurrent, how many operations are queued (Pending) and how many of
// them the free slots admit.
type restartQueue struct {
	plans  []sessionPlan
	limit  map[string]int
	queued int
	fits   int
}

// planRestartQueue plans n operations over the Queue sessions: per session 40%
// terminal, 10% Running, 5% Provisioning and the rest Pending, with
// maxConcurrent the active ones plus 35% of the session.
func (b *bench) planRestartQueue(n int) restartQueue {
	perSession := split(n, b.cfg.scaleSessions)
	q := restartQueue{plans: make([]sessionPlan, 0, len(perSession)), limit: map[string]int{}}
	for i, per := range perSession {
		nC, nR, nP := per*40/100, per*10/100, per*5/100
		nQ := per - nC - nR - nP
		l := nR + nP + per*35/100
		// Registration order mixes the phases; the Pending ones keep theirs.
		var phases []opsv1.OperationPhase
		for j := range per {
			switch {
			case j < nC:
				phases = append(phases, terminalPhase(b.cfg.scaleTerminal))
			case j < nC+nR:
				phases = append(phases, opsv1.PhaseRunning)
			case j < nC+nR+nP:
				phases = append(phases, opsv1.PhaseProvisioning)
			default:
				phases = append(phases, opsv1.PhasePending)
			}
		}
		name := fmt.Sprintf("q%02d", i)
		q.plans = append(q.plans, sessionPlan{name: name, phases: phases, spec: opsv1.OpsSessionSpec{
			MaxConcurrent: ptr.To(int32(l)), MaxCompleted: ptr.To(int32(per)), AdmissionPolicy: opsv1.AdmissionQueue,
		}})
		q.limit[name] = l
		q.fits += min(nQ, l-nR-nP)
		q.queued += nQ
	}
	return q
}

// pending returns the names of the operations loaded as Pending.
func (q restartQueue) pending() map[string]bool {
	pending := map[string]bool{}
	for _, p := range q.plans {
		for j, ph := range p.phases {
			if ph == opsv1.PhasePending {
				pending[opName(p.name, j)] = true
			}
		}
	}
	return pending
}

// waitQueueAdmitted watches the namespace from resource version rv until
// fits of the pending operations are active, and records when the first one
// was, from t0. It gives up after 10 minutes.
func (b *bench) waitQueueAdmitted(ctx context.Context, ns, rv string, pending map[string]bool, fits int, t0 time.Time, r *RestartResult) error {
	admitted := 0
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for admitted < fits {
		w, err := b.admin.Watch(wctx, &opsv1.OperationList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return fmt.Errorf("watching the queue: %w (%d of %d admitted)", err, admitted, fits)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				rv = "" // e.g. expired: watch again from now, with the current state
				break
			}
			op, ok := ev.Object.(*opsv1.Operation)
			if !ok {
				continue
			}
			rv = op.ResourceVersion
			if ev.Type != watch.Deleted && pending[op.Name] && lifecycle.IsActive(op.Status.Phase) {
				delete(pending, op.Name)
				if admitted++; admitted == 1 {
					r.FirstAdmitSeconds = round(time.Since(t0).Seconds(), 2)
				}
				if admitted == fits {
					break
				}
			}
		}
		w.Stop()
		if wctx.Err() != nil {
			return fmt.Errorf("queue not admitted: %d of %d after 10 minutes", admitted, fits)
		}
	}
	return nil
}

// checkQueueOutcome checks the outcome on a fresh list: per session, active
// == what fits, and the admitted ones are the earliest registered. It fills
// r's Admitted, StillQueued, OverAdmitted and FIFO.
func (b *bench) checkQueueOutcome(ctx context.Context, ns string, q restartQueue, r *RestartResult) error {
	var list opsv1.OperationList
	if err := b.admin.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	bySession := map[string][]*opsv1.Operation{}
	for i := range list.Items {
		op := &list.Items[i]
		bySession[op.Spec.SessionName] = append(bySession[op.Spec.SessionName], op)
	}
	r.FIFO = true
	for _, p := range q.plans {
		s := tallySession(p, bySession[p.name])
		r.Admitted += s.admitted
		r.StillQueued += s.stillQueued
		if s.active > q.limit[p.name] {
			r.OverAdmitted += s.active - q.limit[p.name]
		}
		if !s.firstQueued.IsZero() && s.lastAdmitted.After(s.firstQueued) {
			r.FIFO = false
		}
	}
	return nil
}

// sessionTally is one session's operations after the restart.
type sessionTally struct {
	active int
	// admitted: loaded as Pending and active now; stillQueued: Pending now.
	admitted, stillQueued int
	// The latest registration among the admitted ones, and the earliest
	// among those still queued.
	lastAdmitted, firstQueued time.Time
}

// tallySession counts a session's active operations and, when it had
// queued ones, which of those were admitted and which are still queued.
func tallySession(p sessionPlan, ops []*opsv1.Operation) sessionTally {
	var s sessionTally
	hadQueue := slices.Contains(p.phases, opsv1.PhasePending)
	for _, op := range ops {
		ph := lifecycle.Normalize(op.Status.Phase)
		if lifecycle.IsActive(ph) {
			s.active++
		}
		if !hadQueue {
			continue
		}
		created := lifecycle.CreatedAt(op).Time
		wasPending := p.phases[indexOf(op.Name)] == opsv1.PhasePending
		switch {
		case wasPending && lifecycle.IsActive(ph):
			s.admitted++
			if created.After(s.lastAdmitted) {
				s.lastAdmitted = created
			}
		case ph == opsv1.PhasePending:
			s.stillQueued++
			if s.firstQueued.IsZero() || created.Before(s.firstQueued) {
				s.firstQueued = created
			}
		}
	}
	return s
}

// indexOf recovers an operation's registration index from its name.
func indexOf(name string) int {
	i, _ := strconv.Atoi(name[len(name)-5:])
	return i
}

// scaleIdle: n operations (70% terminal, 30% Running), nothing happening:
// the manager's CPU per minute once settled.
func (b *bench) scaleIdle(ctx context.Context, n int) error {
	ns := "bench-scale-idle"
	perSession := split(n, b.cfg.scaleSessions)
	plans := make([]sessionPlan, 0, len(perSession))
	for i, per := range perSession {
		phases := make([]opsv1.OperationPhase, per)
		for j := range phases {
			phases[j] = terminalPhase(b.cfg.scaleTerminal)
			if j%10 >= 7 {
				phases[j] = opsv1.PhaseRunning
			}
		}
		plans = append(plans, sessionPlan{name: fmt.Sprintf("i%02d", i), phases: phases,
			spec: opsv1.OpsSessionSpec{MaxCompleted: ptr.To(int32(per))}})
	}
	logf("scale-idle: %d operations over %d sessions, %s window", n, len(plans), b.cfg.idleWindow)
	load, err := b.load(ctx, ns, plans)
	if err != nil {
		return fmt.Errorf("scale-idle load: %w", err)
	}
	r := &IdleResult{Load: load}
	b.scaleResults().Idle = r
	if err := b.startManager(ctx); err != nil {
		return err
	}
	settled, err := b.waitSettled(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	r.SettledSeconds = round(settled.Seconds(), 2)
	s0, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the scrape's own work pass
	api, etcd := childPID("kube-apiserver"), childPID("etcd")
	p0, a0, e0 := readProc(b.mgr.pid()), readProc(api), readProc(etcd)
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.cfg.idleWindow):
	}
	el := time.Since(start)
	p1, a1, e1 := readProc(b.mgr.pid()), readProc(api), readProc(etcd)
	s1, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	perMin := 60 / el.Seconds()
	r.WindowSeconds = round(el.Seconds(), 1)
	r.CPUSeconds = round(p1.CPU-p0.CPU, 2)
	r.CPUSecondsPerMinute = round((p1.CPU-p0.CPU)*perMin, 2)
	r.APIServerCPUPerMinute = round((a1.CPU-a0.CPU)*perMin, 2)
	r.EtcdCPUPerMinute = round((e1.CPU-e0.CPU)*perMin, 2)
	d := managerRequests(s1).sub(managerRequests(s0))
	r.ManagerWritesInWindow = d.writes()
	for _, v := range d.ByMethod {
		r.ManagerRequestsInWindow += v
	}
	r.RSSMiB, r.PeakRSSMiB = round(mib(p1.RSSKB), 1), round(mib(p1.PeakKB), 1)
	logf("scale-idle %d: settled %.1fs after start; %.2f CPU s/min (kube-apiserver %.2f, etcd %.2f); %.0f manager writes in the window; RSS %.0f MiB (peak %.0f)",
		n, r.SettledSeconds, r.CPUSecondsPerMinute, r.APIServerCPUPerMinute, r.EtcdCPUPerMinute, r.ManagerWritesInWindow, r.RSSMiB, r.PeakRSSMiB)
	return nil
}

// clearScaleData stops the manager and deletes the scale runs' objects.
func (b *bench) clearScaleData(ctx context.Context) error {
	b.mgr.stop()
	for _, ns := range b.scaleNamespaces {
		logf("clearing %s", ns)
		for chunk := 0; ; chunk++ {
			var l metav1.PartialObjectMetadataList
			l.SetGroupVersionKind(opsv1.GroupVersion.WithKind("OperationList"))
			if err := b.admin.List(ctx, &l, client.InNamespace(ns), client.Limit(1)); err != nil {
				return err
			}
			if len(l.Items) == 0 {
				break
			}
			if err := b.admin.DeleteAllOf(ctx, &opsv1.Operation{}, client.InNamespace(ns),
				client.MatchingLabels{chunkLabel: strconv.Itoa(chunk)}); err != nil {
				return err
			}
			if chunk > 10000 {
				return fmt.Errorf("operations left in %s", ns)
			}
		}
		var sessions opsv1.OpsSessionList
		if err := b.admin.List(ctx, &sessions, client.InNamespace(ns)); err != nil {
			return err
		}
		for i := range sessions.Items {
			s := &sessions.Items[i]
			if len(s.Finalizers) > 0 {
				patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
				if err := b.admin.Patch(ctx, s, patch); client.IgnoreNotFound(err) != nil {
					return err
				}
			}
		}
		if err := b.deleteSessions(ctx, ns); err != nil {
			return err
		}
	}
	b.scaleNamespaces = nil
	return nil
}
