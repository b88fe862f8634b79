// Package manager builds the controller manager: both reconcilers, the
// field index, metrics, health probes and leader election. cmd/manager,
// cmd/devcluster and the envtest suite all start it through New.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/controllers"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/pkg/retention"
)

// Options are the manager's settings; cmd/manager maps its flags onto them.
type Options struct {
	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves net/http/pprof when set, for profiling (make bench).
	PprofAddr        string
	LeaderElection   bool
	LeaderElectionID string
	// LeaderElectionNamespace is needed when running outside a cluster.
	LeaderElectionNamespace string
	// SessionConcurrency and OperationConcurrency are each controller's
	// MaxConcurrentReconciles.
	SessionConcurrency   int
	OperationConcurrency int
	// CountsInterval rate-limits count-only session status writes.
	CountsInterval time.Duration
	Clock          clock.PassiveClock
	// SkipNameValidation lets tests run two managers in one process.
	SkipNameValidation bool
	// GracefulShutdownTimeout bounds how long Stop waits for reconciles.
	GracefulShutdownTimeout time.Duration

	// MetricsSecure serves /metrics over HTTPS, authenticating each request
	// with a TokenReview and authorizing it with a SubjectAccessReview
	// (nonResourceURL /metrics, verb get) against the API server. The
	// manager's own identity then needs config/rbac/metrics_auth_role.yaml.
	// False serves plain HTTP with no checks (make run, on loopback).
	MetricsSecure bool
	// MetricsCertDir holds MetricsCertName and MetricsKeyName (default
	// tls.crt and tls.key), reloaded when they change. When empty or the
	// files are missing, a self-signed certificate is generated at start.
	MetricsCertDir  string
	MetricsCertName string
	MetricsKeyName  string
}

// RateLimit sets cfg's client-side rate limit from --kube-api-qps and
// --kube-api-burst. A qps of 0 or below sends requests unthrottled: the
// API server's API Priority and Fairness protects it, and the manager's own
// FlowSchema (config/flowcontrol) queues its requests at their own priority
// level rather than letting a client-side token bucket cap the whole system.
// A positive qps is a token bucket with burst (twice qps when burst <= 0).
func RateLimit(cfg *rest.Config, qps float64, burst int) {
	cfg.RateLimiter = nil
	if qps <= 0 {
		// client-go reads QPS 0 as its default of 5 per second, and any
		// negative value as no limiter at all (rest.RESTClientFor).
		cfg.QPS, cfg.Burst = -1, 0
		return
	}
	if burst <= 0 {
		burst = max(int(2*qps), 1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
}

// New returns a manager with both controllers registered. A cfg that sets
// no rate limit (QPS 0, no RateLimiter) runs unthrottled, as RateLimit does
// for qps 0, rather than at client-go's default of 5 requests per second.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg = rest.CopyConfig(cfg)
		RateLimit(cfg, 0, 0)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = "ops-operator.ops.meerkat.dev"
	}
	shutdown := o.GracefulShutdownTimeout
	if shutdown == 0 {
		shutdown = 30 * time.Second
	}
	skip := o.SkipNameValidation
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        opsclient.Scheme(),
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.ProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdown,
		Controller:                    ctrlConfig(skip),
		// managedFields are a large part of a stored object and nothing here
		// reads them; finished Operations are kept in the cache only as far
		// as admission and retention need them (see trimFinished).
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&opsv1.Operation{}: {Transform: trimFinished}},
		},
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &opsv1.Operation{}, controllers.SessionNameField,
		func(o client.Object) []string { return []string{o.(*opsv1.Operation).Spec.SessionName} }); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready means able to admit: the informers have synced.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	metrics, err := newMetricsOnce(mgr)
	if err != nil {
		return nil, err
	}
	rec := mgr.GetEventRecorder("ops-operator")
	if err := (&controllers.OpsSessionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Clock: o.Clock,
		CountsInterval: o.CountsInterval, Metrics: metrics,
	}).SetupWithManager(mgr, max(o.SessionConcurrency, 1)); err != nil {
		return nil, err
	}
	if err := (&controllers.OperationReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Clock: o.Clock, Metrics: metrics,
	}).SetupWithManager(mgr, max(o.OperationConcurrency, 1)); err != nil {
		return nil, err
	}
	return mgr, nil
}

// metricsOptions maps the metrics settings onto the metrics server's.
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if !o.MetricsSecure {
		return m
	}
	m.SecureServing = true
	m.FilterProvider = metricsAuthFilter
	m.CertDir, m.CertName, m.KeyName = o.MetricsCertDir, o.MetricsCertName, o.MetricsKeyName
	// HTTP/2 is off (CVE-2023-44487, CVE-2023-39325), as in kubebuilder's scaffold.
	m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	return m
}

// trimFinished is the cache transform for Operations. A session may retain
// tens of thousands of finished operations; the manager needs from each only
// its identity, session, kind, phase and times (to count, order and evict
// it), not its outcome (a result may be 256 KiB), conditions or progress.
// Operations still in flight are cached whole.
func trimFinished(obj any) (any, error) {
	op, ok := obj.(*opsv1.Operation)
	if !ok {
		return obj, nil
	}
	op.ManagedFields = nil
	if !lifecycle.IsFinal(op.Status.Phase) {
		return op, nil
	}
	// Retention reads the GitOps marks, and the created-at annotation: a
	// rejection has no completedAt, so its registration time (to the
	// microsecond) is its place in completion order. The rest of the
	// annotations go. Decided before the conditions go: see
	// controllers.CachedConditionsStale.
	kept := map[string]string{}
	for _, k := range append([]string{opsv1.AnnotationCreatedAt}, retention.DeclaredMarks...) {
		if v, ok := op.Annotations[k]; ok {
			kept[k] = v
		}
	}
	if !lifecycle.ConditionsTrue(op) {
		kept[controllers.CachedConditionsStale] = "true"
	}
	op.Annotations = nil
	if len(kept) > 0 {
		op.Annotations = kept
	}
	st := &op.Status
	st.Conditions, st.Outcome, st.Progress, st.PeerHandle, st.Rejection = nil, nil, nil, nil, nil
	op.Spec.DisplayName, op.Spec.SourceLabel, op.Spec.ChildSessionID = "", "", ""
	return op, nil
}
