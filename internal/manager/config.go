package manager

import (
	"sync"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meerkat-ops/ops-operator/controllers"
)

func ctrlConfig(skipNameValidation bool) config.Controller {
	return config.Controller{SkipNameValidation: &skipNameValidation}
}

var (
	metricsOnce sync.Once
	metrics     *controllers.Metrics
)

// newMetricsOnce registers the operator's metrics with controller-runtime's
// global registry once per process; a second manager in the same process
// (tests) shares them.
func newMetricsOnce(mgr ctrl.Manager) *controllers.Metrics {
	metricsOnce.Do(func() {
		metrics = controllers.NewMetrics(crmetrics.Registry, mgr.GetCache())
	})
	return metrics
}
