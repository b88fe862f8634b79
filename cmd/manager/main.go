// Command manager runs the ops-operator controller manager: admission,
// retention, control requests, termination and deadlines for Meerkat
// operations. It uses KUBECONFIG, --kubeconfig or the in-cluster config.
package main

import (
	"flag"
	"log/slog"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meerkat-ops/ops-operator/controllers"
	"github.com/meerkat-ops/ops-operator/internal/manager"
)

func main() {
	var o manager.Options
	var qps float64
	var burst int
	var memRatio float64
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to (use :8080 with --metrics-secure=false); 0 disables it.")
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only requests whose bearer token the API server authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview). False serves plain HTTP to anyone.")
	flag.StringVar(&o.MetricsCertDir, "metrics-cert-path", "", "Directory holding the metrics server's certificate and key (reloaded on change); empty generates a self-signed certificate.")
	flag.StringVar(&o.MetricsCertName, "metrics-cert-name", "tls.crt", "Certificate file name in --metrics-cert-path.")
	flag.StringVar(&o.MetricsKeyName, "metrics-cert-key", "tls.key", "Key file name in --metrics-cert-path.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "", "Address net/http/pprof binds to; empty disables it.")
	flag.BoolVar(&o.LeaderElection, "leader-elect", false, "Elect a leader so only one replica reconciles at a time.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (needed outside a cluster).")
	flag.IntVar(&o.SessionConcurrency, "session-concurrent-reconciles", 16, "OpsSession reconciles run in parallel (different sessions only; each admits, evicts and terminates for its session).")
	flag.IntVar(&o.OperationConcurrency, "operation-concurrent-reconciles", 16, "Operation reconciles run in parallel (control requests and deadlines).")
	flag.DurationVar(&o.CountsInterval, "session-counts-interval", controllers.DefaultCountsInterval, "Minimum time between session status writes that only refresh counts.")
	flag.Float64Var(&qps, "kube-api-qps", -1, "Client-side rate limit on API requests per second; 0 or negative (the default) sets none. The API server's API Priority and Fairness protects it: the manager's FlowSchema (config/flowcontrol, the chart's flowControl values) gives its ServiceAccount a priority level of its own, whose queues absorb its bursts. Set a limit only for an API server without that FlowSchema, e.g. 200.")
	flag.IntVar(&burst, "kube-api-burst", 0, "Client-side burst above a positive --kube-api-qps; 0 means twice --kube-api-qps.")
	flag.Float64Var(&memRatio, "memory-limit-ratio", 0.9, "Set GOMEMLIMIT to this fraction of the container's memory limit (cgroup), so the Go runtime collects before the limit is reached; 0 disables. A GOMEMLIMIT in the environment wins.")
	zo := zap.Options{Development: false, TimeEncoder: nil}
	zo.BindFlags(flag.CommandLine)
	// --kubeconfig is registered by controller-runtime's config package.
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))
	log := ctrl.Log.WithName("setup")
	if memRatio > 0 {
		// No limit (outside a container) leaves the Go default: no soft limit.
		_, _ = memlimit.Set(memlimit.WithRatio(memRatio),
			memlimit.WithLogger(slog.New(logr.ToSlogHandler(log))))
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "loading kubeconfig")
		os.Exit(1)
	}
	manager.RateLimit(cfg, qps, burst)
	cfg.UserAgent = "ops-operator-manager"
	mgr, err := manager.New(cfg, o)
	if err != nil {
		log.Error(err, "building manager")
		os.Exit(1)
	}
	log.Info("starting manager", "qps", cfg.QPS, "burst", cfg.Burst,
		"metricsAddr", o.MetricsAddr, "metricsSecure", o.MetricsSecure,
		"sessionConcurrency", o.SessionConcurrency, "operationConcurrency", o.OperationConcurrency)
	// SetupSignalHandler cancels on SIGTERM or SIGINT; Start then drains
	// reconciles (GracefulShutdownTimeout) and releases the leader lease.
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
