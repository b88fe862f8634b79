// Command bench measures the ops-operator on a local control plane: the API
// server's raw write ceiling, then full operation lifecycles driven by agents
// through pkg/opsclient against the real manager (bin/manager, run as its own
// process), and, behind flags, the manager's memory and start-up with many
// retained operations, its recovery of a queue after a restart, and its idle
// cost. `make bench` runs it; docs/benchmarks.md has the figures.
//
//	make bench                                        # ~2 minutes
//	make bench BENCH_ARGS="-ops 20 -concurrency 4"
//	make bench BENCH_ARGS="-scale-retained 50000"
//	bin/bench -summarize 'bench-results/run*.json' -plot    # after make bench built it
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meerkat-ops/ops-operator/controllers"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

type config struct {
	bin, crds, managerBin string
	out, plotFile         string
	plot                  bool
	summarize             string

	managerArgs []string // pass-through flags that were set
	// managerGOMEMLIMIT, when set, is the manager's GOMEMLIMIT environment.
	managerGOMEMLIMIT string
	// scaleRetainedGOMEMLIMIT: see retainedUnderMemLimit.
	scaleRetainedGOMEMLIMIT string
	// countsInterval is the manager's --session-counts-interval: how long
	// its last, rate-limited summary writes may trail a phase.
	countsInterval time.Duration

	qps   float64
	burst int

	sessions, ops, progress int
	concurrency             []int
	duration                time.Duration
	maxCompleted            int
	maxConcurrent           int
	policy                  string
	halfLoad                bool
	halfLoadDuration        time.Duration
	halfLoadFraction        float64
	sweep                   bool

	// progressInterval is the agents' opsclient.WithProgressInterval;
	// progressOver spreads each lifecycle's k reports over this long.
	progressInterval, progressOver time.Duration

	scaleRetained, scaleRestart, scaleIdle int
	scaleSessions                          int
	scaleTerminal                          string
	idleWindow                             time.Duration

	pprof            bool
	ceilingOperation bool
	// lifecycleCeilingVariant: see lifecycleWrites.
	lifecycleCeilingVariant string
}

func parseFlags() config {
	var c config
	var conc string
	flag.StringVar(&c.bin, "bin", "bin", "Folder holding kube-apiserver, etcd, kubectl and manager.")
	flag.StringVar(&c.crds, "crds", "config/crd/bases", "Folder of CRD manifests to install.")
	flag.StringVar(&c.managerBin, "manager", "", "Manager binary (default <bin>/manager, built with go build if missing).")
	flag.StringVar(&c.out, "out", "bench-results/results.json", "JSON results file.")
	flag.BoolVar(&c.plot, "plot", false, "Write the plot of lifecycles/s and p99 latencies against concurrency.")
	flag.StringVar(&c.plotFile, "plot-file", "docs/benchmarks.png", "Where -plot writes the PNG.")
	flag.StringVar(&c.summarize, "summarize", "", "Instead of running, read the result files matching this glob and report their medians (with -out and -plot).")

	// Passed to the manager only when set; otherwise the manager's defaults hold.
	flag.Float64("kube-api-qps", 0, "Manager --kube-api-qps (default: the manager's).")
	flag.Int("kube-api-burst", 0, "Manager --kube-api-burst (default: the manager's).")
	flag.Int("session-concurrent-reconciles", 0, "Manager --session-concurrent-reconciles (default: the manager's).")
	flag.Int("operation-concurrent-reconciles", 0, "Manager --operation-concurrent-reconciles (default: the manager's).")

	flag.Float64Var(&c.qps, "qps", 5000, "QPS of the bench's client (the ceiling's and the agents'), high enough not to limit.")
	flag.IntVar(&c.burst, "burst", 5000, "Burst of the bench's client.")
	flag.IntVar(&c.sessions, "sessions", 8, "Sessions per lifecycle phase (S).")
	flag.IntVar(&c.ops, "ops", 40, "Operations per session (N).")
	flag.StringVar(&conc, "concurrency", "4,16,64", "Agent goroutines (C); a comma list sweeps.")
	flag.IntVar(&c.progress, "progress", 3, "ReportProgress calls per lifecycle (k).")
	flag.DurationVar(&c.progressInterval, "progress-interval", 0, "The agents' progress coalescing interval (opsclient.WithProgressInterval); 0 writes every report, as before coalescing. The chatty scenario: -progress 50 -progress-over 2s -progress-interval 1s.")
	flag.DurationVar(&c.progressOver, "progress-over", 0, "Spread each lifecycle's k progress reports evenly over this long (one every d/k), as a streaming agent would; 0 sends them back to back.")
	flag.DurationVar(&c.duration, "duration", 6*time.Second, "How long each ceiling measurement writes.")
	flag.IntVar(&c.maxCompleted, "max-completed", 0, "Sessions' maxCompleted: retention evicts beyond it.")
	flag.IntVar(&c.maxConcurrent, "max-concurrent", -1, "Sessions' maxConcurrent; -1 leaves it unset (unlimited).")
	flag.StringVar(&c.policy, "admission-policy", "", "Sessions' admissionPolicy (Reject or Queue; default the CRD's).")
	flag.BoolVar(&c.halfLoad, "half-load", true, "After the sweep, run at half the best lifecycles/s to measure latency below saturation.")
	flag.DurationVar(&c.halfLoadDuration, "half-load-duration", 15*time.Second, "Length of the half-load run.")
	flag.Float64Var(&c.halfLoadFraction, "half-load-fraction", 0.5, "The paced run's rate as a fraction of the sweep's best lifecycles/s (0.5: half load).")
	flag.BoolVar(&c.sweep, "sweep", true, "Run the ceiling and lifecycle sweep (off by default when a -scale-* run is asked for).")

	flag.IntVar(&c.scaleRetained, "scale-retained", 0, "Retain this many terminal Operations in one namespace, restart the manager, measure its RSS and start-up.")
	flag.StringVar(&c.scaleRetainedGOMEMLIMIT, "scale-retained-gomemlimit", "", "After -scale-retained's measurement, start the manager again with this GOMEMLIMIT (such as 230MiB) and measure its memory again.")
	flag.IntVar(&c.scaleRestart, "scale-restart", 0, "This many Operations in mixed phases (Pending under Queue sessions), restart the manager, time until the queue is admitted.")
	flag.IntVar(&c.scaleIdle, "scale-idle", 0, "Idle manager with this many Operations: CPU seconds per minute.")
	flag.IntVar(&c.scaleSessions, "scale-sessions", 10, "Sessions the scale runs spread their Operations over.")
	flag.StringVar(&c.scaleTerminal, "scale-terminal", "Completed", "Terminal phase of the scale runs' retained Operations: Completed (4 writes each) or Cancelled (2).")
	flag.DurationVar(&c.idleWindow, "idle-window", time.Minute, "How long -scale-idle measures.")
	flag.BoolVar(&c.pprof, "pprof", false, "Save 10 s CPU profiles of kube-apiserver and (if it has --pprof-bind-address) the manager during the last sweep phase, and the manager's heap once settled in -scale-retained, in the -out folder.")
	flag.DurationVar(&c.countsInterval, "session-counts-interval", controllers.DefaultCountsInterval, "The manager's --session-counts-interval. Each lifecycle phase waits this long (plus 1 s) after retention finishes, so the trailing rate-limited session status writes are counted.")
	flag.StringVar(&c.managerGOMEMLIMIT, "manager-gomemlimit", "", "GOMEMLIMIT for the manager process, such as 230MiB: what --memory-limit-ratio 0.9 sets in a container limited to 256Mi.")
	flag.StringVar(&c.lifecycleCeilingVariant, "lifecycle-ceiling-variant", "full", "What the lifecycle-writes ceiling (-ceiling-operation) sends: full; no-conditions; minimal-status (phase and outcome only); merge-patch (status merge patches with a resourceVersion instead of updates); no-delete.")
	flag.BoolVar(&c.ceilingOperation, "ceiling-operation", false, "Also measure the ceiling with Operation objects: create then a status patch that keeps them Pending (the CRD the lifecycles write), and the lifecycle's own write sequence back to back (create, admit, provisioning succeeded, k progress reports, complete, delete) with no manager and no watchers.")
	zo := zap.Options{Development: false}
	zo.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo), zap.Level(zapcore.ErrorLevel)))

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range []string{"kube-api-qps", "kube-api-burst", "session-concurrent-reconciles", "operation-concurrent-reconciles", "session-counts-interval"} {
		if set[name] {
			c.managerArgs = append(c.managerArgs, "--"+name+"="+flag.Lookup(name).Value.String())
		}
	}
	if (c.scaleRetained > 0 || c.scaleRestart > 0 || c.scaleIdle > 0) && !set["sweep"] {
		c.sweep = false
	}
	for _, f := range strings.Split(conc, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fatalf("bad -concurrency %q", conc)
		}
		c.concurrency = append(c.concurrency, n)
	}
	if c.sweep && len(c.concurrency) == 0 {
		fatalf("-concurrency is empty")
	}
	if c.managerBin == "" {
		c.managerBin = filepath.Join(c.bin, "manager")
	}
	return c
}

func main() {
	cfg := parseFlags()
	if cfg.summarize != "" {
		if err := summarizeFiles(cfg); err != nil {
			fatalf("%v", err)
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		logf("interrupted: stopping the manager and the control plane (Ctrl-C again to abandon them)")
		signal.Stop(sig)
		cancel()
	}()

	b := &bench{cfg: cfg, res: &Results{Started: time.Now().UTC().Format(time.RFC3339)}}
	err := b.run(ctx)
	b.shutdown()
	if werr := b.write(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fatalf("%v", err)
	}
}

// bench holds one run's cluster, manager, clients and results.
type bench struct {
	cfg config
	res *Results

	cl  *cluster
	mgr *managerProc

	agentCounter requestCounter
	agent        client.WithWatch // agents' client: counted, -qps/-burst
	ceilCounter  requestCounter
	ceil         client.Client    // the ceiling's client: same settings
	admin        client.WithWatch // bookkeeping: not counted
	resultsDir   string
	// scaleNamespaces hold the scale runs' data, for clearScaleData.
	scaleNamespaces []string
}

// run sets up the control plane and the manager, then runs the sweep (the
// ceilings, then the lifecycle phases) and the scale runs that were asked for.
func (b *bench) run(ctx context.Context) error {
	if err := b.setUp(ctx); err != nil {
		return err
	}
	if b.cfg.sweep {
		// The ceiling runs before the manager starts: its objects are
		// OpsSessions, which the manager would otherwise reconcile.
		if err := b.measureCeilings(ctx); err != nil {
			return err
		}
		if err := b.sweepLifecycles(ctx); err != nil {
			return err
		}
	}
	return b.runScale(ctx)
}

// setUp prepares the results folder, describes the host, starts the control
// plane, makes the clients, warms up the CRDs and configures (but does not
// start) the manager.
func (b *bench) setUp(ctx context.Context) error {
	cfg := b.cfg
	b.resultsDir = filepath.Dir(cfg.out)
	if err := os.MkdirAll(b.resultsDir, 0o755); err != nil {
		return err
	}
	b.describeHost()
	if err := ensureManagerBinary(cfg.managerBin); err != nil {
		return err
	}

	logf("starting the control plane from %s", cfg.bin)
	t0 := time.Now()
	cl, err := startCluster(cfg.bin, cfg.crds)
	if err != nil {
		return err
	}
	b.cl = cl
	logf("control plane up in %s", time.Since(t0).Round(time.Millisecond))
	if err := b.makeClients(); err != nil {
		return err
	}
	if err := b.warmUpCRDs(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	b.configureManager()
	return nil
}

// configureManager sets up the manager process (binary, kubeconfig, args,
// GOMEMLIMIT, pprof) and records its arguments in the results.
func (b *bench) configureManager() {
	cfg := b.cfg
	b.mgr = &managerProc{
		bin: cfg.managerBin, kubeconfig: b.cl.managerKubeconfig, args: cfg.managerArgs,
		logPath: filepath.Join(b.resultsDir, "manager.log"),
	}
	// The recorded args also note the GOMEMLIMIT; the process gets it
	// through its environment, not as a flag.
	recorded := cfg.managerArgs
	if cfg.managerGOMEMLIMIT != "" {
		b.mgr.env = []string{"GOMEMLIMIT=" + cfg.managerGOMEMLIMIT}
		recorded = append(recorded, "(env GOMEMLIMIT="+cfg.managerGOMEMLIMIT+")")
	}
	if cfg.pprof {
		b.mgr.pprof = hasFlag(cfg.managerBin, "pprof-bind-address")
		if !b.mgr.pprof {
			logf("%s has no --pprof-bind-address: profiling kube-apiserver only", cfg.managerBin)
		}
	}
	b.res.ManagerArgs = recorded
}

// measureCeilings measures the API server's write ceiling at each C: with
// OpsSessions, and with -ceiling-operation also with Operations and with
// the lifecycle's own writes.
func (b *bench) measureCeilings(ctx context.Context) error {
	kinds := []string{ceilingSessions}
	if b.cfg.ceilingOperation {
		kinds = append(kinds, ceilingOperations, ceilingLifecycle)
	}
	for _, c := range b.cfg.concurrency {
		for _, kind := range kinds {
			r, err := b.ceiling(ctx, c, kind)
			if err != nil {
				return fmt.Errorf("%s ceiling at C=%d: %w", kind, c, err)
			}
			label := b.recordCeiling(kind, r)
			logf("%s C=%d: %.0f writes/s (%d writes in %.1fs; kube-apiserver %.2f cores, etcd %.2f, other load %.2f)",
				label, c, r.WritesPerSec, r.Writes, r.Seconds, r.APIServerCores, r.EtcdCores, r.OtherCores)
		}
	}
	return nil
}

// recordCeiling stores a ceiling measurement under its kind and returns the
// label its log line starts with.
func (b *bench) recordCeiling(kind string, r CeilingResult) string {
	switch kind {
	case ceilingSessions:
		b.res.Ceiling = append(b.res.Ceiling, r)
		return "ceiling"
	case ceilingOperations:
		b.res.OperationCeiling = append(b.res.OperationCeiling, r)
		return "ceiling with Operations"
	default:
		variant := b.cfg.lifecycleCeilingVariant
		r.Kind += "/" + variant
		b.res.LifecycleCeiling = append(b.res.LifecycleCeiling, r)
		return "ceiling with the lifecycle's writes (" + variant + ")"
	}
}

// sweepLifecycles starts the manager, runs a warm-up, a lifecycle phase at
// each C and the paced (half-load) phase, then prints the table and, with
// -plot, writes the plot.
func (b *bench) sweepLifecycles(ctx context.Context) error {
	cfg := b.cfg
	if err := b.startManager(ctx); err != nil {
		return err
	}
	if _, err := b.lifecycles(ctx, "warm-up", 2, 1, 4, 0, 0); err != nil {
		return fmt.Errorf("warm-up lifecycle: %w", err)
	}
	best := 0.0
	for i, c := range cfg.concurrency {
		profile := cfg.pprof && i == len(cfg.concurrency)-1
		r, err := b.lifecycles(ctx, fmt.Sprintf("c%d", c), c, cfg.sessions, cfg.ops, 0, boolSeconds(profile, 10))
		if err != nil {
			return fmt.Errorf("lifecycles at C=%d: %w", c, err)
		}
		b.res.Lifecycles = append(b.res.Lifecycles, r)
		printLifecycle(r)
		best = max(best, r.LifecyclesPerSec)
	}
	if cfg.halfLoad && best > 0 {
		if err := b.pacedLifecycles(ctx, best); err != nil {
			return err
		}
	}
	if err := printTable(b.res); err != nil {
		return fmt.Errorf("printing the table: %w", err)
	}
	if cfg.plot {
		if err := writePlot(b.res, cfg.plotFile); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		logf("plot written to %s", cfg.plotFile)
	}
	return nil
}

// pacedLifecycles runs the lifecycle phase paced at -half-load-fraction of
// the sweep's best lifecycles/s, at the largest C, for about
// -half-load-duration.
func (b *bench) pacedLifecycles(ctx context.Context, best float64) error {
	cfg := b.cfg
	rate := best * cfg.halfLoadFraction
	name := "half-load"
	if cfg.halfLoadFraction != 0.5 {
		name = fmt.Sprintf("load-%.0fpct", 100*cfg.halfLoadFraction)
	}
	c := cfg.concurrency[len(cfg.concurrency)-1]
	n := max(int(rate*cfg.halfLoadDuration.Seconds()), 2*cfg.sessions)
	perSession := (n + cfg.sessions - 1) / cfg.sessions
	r, err := b.lifecycles(ctx, name, c, cfg.sessions, perSession, rate, 0)
	if err != nil {
		return fmt.Errorf("half-load: %w", err)
	}
	b.res.HalfLoad = &r
	printLifecycle(r)
	return nil
}

// runScale runs the scale runs that were asked for, smallest first; each
// restarts the manager on its data and clears the data for the next.
func (b *bench) runScale(ctx context.Context) error {
	cfg := b.cfg
	type scaleRun struct {
		n   int
		run func(context.Context, int) error
	}
	var runs []scaleRun
	if cfg.scaleIdle > 0 {
		runs = append(runs, scaleRun{cfg.scaleIdle, b.scaleIdle})
	}
	if cfg.scaleRestart > 0 {
		runs = append(runs, scaleRun{cfg.scaleRestart, b.scaleRestart})
	}
	if cfg.scaleRetained > 0 {
		runs = append(runs, scaleRun{cfg.scaleRetained, b.scaleRetained})
	}
	for i, r := range runs {
		if err := r.run(ctx, r.n); err != nil {
			return err
		}
		if i < len(runs)-1 {
			if err := b.clearScaleData(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func boolSeconds(on bool, s int) int {
	if on {
		return s
	}
	return 0
}

func (b *bench) startManager(ctx context.Context) error {
	if err := b.mgr.start(); err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	ready, err := b.mgr.waitReady(ctx, 60*time.Second)
	if err != nil {
		return err
	}
	logf("manager pid %d ready in %s (args %v; log %s)", b.mgr.pid(), ready.Round(time.Millisecond), b.mgr.args, b.mgr.logPath)
	return nil
}

// shutdown stops every child process: the manager first, then the control plane.
func (b *bench) shutdown() {
	if b.mgr != nil && b.mgr.running() {
		b.mgr.stop()
	}
	if b.cl != nil {
		b.cl.stop()
		b.cl = nil
	}
}

func (b *bench) makeClients() error {
	base := rest.CopyConfig(b.cl.cfg)
	base.UserAgent = "ops-bench"
	scheme := opsclient.Scheme()

	agentCfg := rest.CopyConfig(base)
	agentCfg.QPS, agentCfg.Burst = float32(b.cfg.qps), b.cfg.burst
	agentCfg.WrapTransport = b.agentCounter.wrap
	var err error
	if b.agent, err = client.NewWithWatch(agentCfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	ceilCfg := rest.CopyConfig(base)
	ceilCfg.QPS, ceilCfg.Burst = float32(b.cfg.qps), b.cfg.burst
	ceilCfg.WrapTransport = b.ceilCounter.wrap
	if b.ceil, err = client.New(ceilCfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	adminCfg := rest.CopyConfig(base)
	adminCfg.QPS, adminCfg.Burst = 5000, 10000
	b.admin, err = client.NewWithWatch(adminCfg, client.Options{Scheme: scheme})
	return err
}

func (b *bench) ensureNamespace(ctx context.Context, ns string) error {
	err := b.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (b *bench) describeHost() {
	h := HostInfo{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(la))
		if len(f) > 0 {
			h.Load1AtStart, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		h.Commit = strings.TrimSpace(string(out))
	}
	if v, err := os.ReadFile(filepath.Join(b.cfg.bin, ".kube-apiserver.version")); err == nil {
		h.KubeAPIServer = strings.TrimSpace(string(v))
	}
	if v, err := os.ReadFile(filepath.Join(b.cfg.bin, ".etcd.version")); err == nil {
		h.Etcd = strings.TrimSpace(string(v))
	}
	b.res.Host = h
	b.res.Args = os.Args[1:]
	logf("host: %d cores, load average %.2f, commit %s", h.Cores, h.Load1AtStart, h.Commit)
}

// hasFlag reports whether the program lists the flag in its -h output.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+name)
}

// ensureManagerBinary builds bin/manager when it is missing (make bench
// builds it first; so does make build).
func ensureManagerBinary(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	logf("%s is missing: go build -o %s ./cmd/manager", path, path)
	cmd := exec.Command("go", "build", "-o", path, "./cmd/manager")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func (b *bench) write() error {
	if b.res == nil {
		return nil
	}
	data, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(b.cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(b.cfg.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	logf("results written to %s", b.cfg.out)
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}
