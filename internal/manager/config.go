package manager

import (
	"context"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
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
// global registry once per process, fed by the first manager's Operation
// informer; a second manager in the same process (tests) shares them.
func newMetricsOnce(mgr ctrl.Manager) (*controllers.Metrics, error) {
	var err error
	metricsOnce.Do(func() {
		metrics = controllers.NewMetrics(crmetrics.Registry)
		var inf cache.Informer
		if inf, err = mgr.GetCache().GetInformer(context.Background(), &opsv1.Operation{}); err == nil {
			_, err = inf.AddEventHandler(metrics.OperationEvents())
		}
		// A namespace's series start at 0 as soon as it has a session, so
		// its first admission or rejection is counted by rate() too.
		if err == nil {
			if inf, err = mgr.GetCache().GetInformer(context.Background(), &opsv1.OpsSession{}); err == nil {
				_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
					AddFunc: func(obj any) {
						if s, ok := obj.(*opsv1.OpsSession); ok {
							metrics.InitNamespace(s.Namespace)
						}
					},
				})
			}
		}
	})
	return metrics, err
}
