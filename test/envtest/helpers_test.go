package envtest

import (
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

func objKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// withKubeconfig is kubectl's arguments args as the user of kubeconfig.
func withKubeconfig(kubeconfig string, args ...string) []string {
	return append([]string{"--kubeconfig", kubeconfig}, args...)
}

// managerName is what the bundle names the manager: its ClusterRole,
// ServiceAccount and Deployment, its FlowSchema and priority level.
const managerName = "ops-operator-manager"

// sampleSession is the OpsSession of config/samples.
const sampleSession = "demo-session"

// The kinds of the CRDs.
const (
	kindOperation  = "Operation"
	kindOpsSession = "OpsSession"
)
