//go:build tools

// Package tools pins the helm CLI this project builds into bin/helm (for
// rendering and checking the chart under dist/chart).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
