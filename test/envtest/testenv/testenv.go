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
	"github.com/meerkat-ops/ops-operator/internal/controlplane"
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

// warmUp names the namespace, OpsSession and Operation of Start's first
// writes.
const warmUp = "warm-up"

// Start starts the control plane with the CRDs, the admission policy and
// the shipped roles installed (internal/controlplane), an admin client for
// setting up test namespaces, and takes the API server's first-write stall on
// the new CRDs. Everything else a test does should go through an identity
// from User.
func Start() (*envtest.Environment, *rest.Config, client.WithWatch, error) {
	env := controlplane.Environment(Assets(), Root())
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
	if err := controlplane.Install(ctx, env, Root()); err != nil {
		_ = env.Stop()
		return nil, nil, nil, err
	}
	// The API server stalls the first write to a just-created CRD; take it here.
	_ = c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: warmUp}})
	_ = c.Create(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: warmUp, Namespace: warmUp}})
	if err := c.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: warmUp, Namespace: warmUp},
		Spec: opsv1.OperationSpec{SessionName: warmUp, Kind: opsv1.BackgroundToolOp}}); err != nil {
		_ = env.Stop()
		return nil, nil, nil, fmt.Errorf("warm-up write: %w", err)
	}
	return env, cfg, c, nil
}

// User returns a client configuration for a new user of persona p, with the
// same client-side rate limits as the admin's.
func User(env *envtest.Environment, p controlplane.Persona, name string) (*rest.Config, error) {
	cfg, err := controlplane.User(env, p, name)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg, nil
}

// Client returns a client with watches for a new user of persona p.
func Client(env *envtest.Environment, p controlplane.Persona, name string) (client.WithWatch, error) {
	cfg, err := User(env, p, name)
	if err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: opsclient.Scheme()})
}
