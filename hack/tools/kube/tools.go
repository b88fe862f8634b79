//go:build tools

// Package tools pins the Kubernetes binaries this project builds for envtest,
// make run and make bench: kube-apiserver, kubectl, and kube-controller-manager
// (make run's garbage collector and namespace controller).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
