//go:build tools

// Package tools pins the Kubernetes binaries this project builds for envtest,
// make run and make bench.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
