// Package testenv starts the real control plane (kube-apiserver and etcd
// built into bin/ by `make controlplane`) with the project's CRDs, for the
// envtest suites.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// Root is the repository's top folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Assets is where kube-apiserver, etcd and kubectl are: KUBEBUILDER_ASSETS, else bin/.
func Assets() string {
	if a := os.Getenv("KUBEBUILDER_ASSETS"); a != "" {
		return a
	}
	return filepath.Join(Root(), "bin")
}

// Start starts the control plane with the CRDs installed, a client for it,
// and takes the API server's first-write stall on the new CRDs.
func Start() (*envtest.Environment, *rest.Config, client.WithWatch, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory: Assets(),
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("starting envtest (run `make controlplane` first): %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: opsclient.Scheme()})
	if err != nil {
		_ = env.Stop()
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The API server stalls the first write to a just-created CRD; take it here.
	_ = c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "warm-up"}})
	_ = c.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "warm-up", Namespace: "warm-up"}})
	if err := c.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "warm-up", Namespace: "warm-up"},
		Spec: opsv1.OperationSpec{SessionName: "warm-up", Kind: opsv1.BackgroundToolOp}}); err != nil {
		_ = env.Stop()
		return nil, nil, nil, fmt.Errorf("warm-up write: %w", err)
	}
	return env, cfg, c, nil
}
