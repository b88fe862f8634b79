// Package controlplane starts the real control plane (kube-apiserver and etcd
// built into bin/) and installs what a cluster admin installs: the CRDs, the
// admission policy of config/policy and the ClusterRoles of config/rbac. It
// then hands out identities, one user per persona, each bound to the role we
// ship for it. `make run` and the envtest suites both start through it, so
// the manager and the agents there run under the same roles as in a cluster.
package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// Persona is who is calling: each gets the shipped role of its kind.
type Persona struct {
	// Group is the group every user of the persona is in; Install binds it.
	Group string
	// ClusterRoles are the shipped roles bound to Group.
	ClusterRoles []string
}

var (
	// Manager is the controller manager: the generated manager role and
	// the metrics endpoint's authentication and authorization role.
	Manager = Persona{Group: "ops-operator:managers", ClusterRoles: []string{"ops-operator-manager", "ops-operator-metrics-auth"}}
	// Agent is an in-cluster agent using pkg/opsclient.
	Agent = Persona{Group: "ops-operator:agents", ClusterRoles: []string{"ops-operator-agent"}}
	// Viewer is a person who reads: the built-in view role, into which a
	// cluster aggregates ops-operator-viewer. The envtest suites run no
	// aggregation controller (make run does), so view is bound through the
	// role it aggregates (system:aggregate-to-view) and ours beside it.
	Viewer = Persona{Group: "ops-operator:viewers", ClusterRoles: []string{"system:aggregate-to-view", "ops-operator-viewer"}}
	// Editor is a person who runs sessions: creates, re-limits, cancels.
	// Likewise the built-in edit role and ops-operator-editor.
	Editor = Persona{Group: "ops-operator:editors", ClusterRoles: []string{"system:aggregate-to-view", "system:aggregate-to-edit", "ops-operator-editor"}}

	personas = []Persona{Manager, Agent, Viewer, Editor}
)

// Environment is an envtest environment over the binaries in bin with the
// CRDs in root/config/crd/bases.
func Environment(bin, root string) *envtest.Environment {
	return &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// Install applies, as the cluster admin, the admission policy and the
// shipped ClusterRoles under root/config, binds each persona's group to its
// roles, and returns once the policy is enforced.
func Install(ctx context.Context, env *envtest.Environment, root string) error {
	admin, err := client.New(env.Config, client.Options{})
	if err != nil {
		return err
	}
	var objs []*unstructured.Unstructured
	for _, dir := range []string{"policy", "rbac"} {
		found, err := ReadManifests(filepath.Join(root, "config", dir))
		if err != nil {
			return err
		}
		objs = append(objs, found...)
	}
	for _, o := range objs {
		// Namespaced objects (the ServiceAccount and leader election Role)
		// belong to a Deployment; a local control plane has none.
		if o.GetNamespace() != "" || o.GetKind() == "ClusterRoleBinding" {
			continue
		}
		o.SetManagedFields(nil)
		// The manifests come from YAML, not from typed API objects, so every
		// field in them was set on purpose and belongs in the apply.
		ac := client.ApplyConfigurationFromUnstructured(o)
		if err := admin.Apply(ctx, ac, client.FieldOwner("ops-operator-install"), client.ForceOwnership); err != nil {
			return fmt.Errorf("installing %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	for _, p := range personas {
		for _, role := range p.ClusterRoles {
			b := &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(role+":"+p.Group, ":", "-")},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: p.Group}},
			}
			if err := admin.Create(ctx, b); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("binding %s: %w", b.Name, err)
			}
		}
	}
	return waitForPolicy(ctx, env)
}

// User returns a client configuration for a new user of persona p.
func User(env *envtest.Environment, p Persona, name string) (*rest.Config, error) {
	u, err := env.AddUser(envtest.User{Name: name, Groups: []string{p.Group}}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// KubeConfig returns a kubeconfig file's bytes for a new user of persona p.
func KubeConfig(env *envtest.Environment, p Persona, name string) ([]byte, error) {
	u, err := env.AddUser(envtest.User{Name: name, Groups: []string{p.Group}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// waitForPolicy returns once the API server enforces the admission policy:
// the policy's informer takes a moment to pick up a new policy. It probes
// with an agent that tries to admit an operation itself, in namespace
// default, and removes the probe afterwards.
func waitForPolicy(ctx context.Context, env *envtest.Environment) error {
	cfg, err := User(env, Agent, "ops-operator-install-probe")
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: opsclient.Scheme()})
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		probe := &opsv1.Operation{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "ops-operator-policy-probe-", Namespace: metav1.NamespaceDefault},
			Spec:       opsv1.OperationSpec{SessionName: "ops-operator-policy-probe", Kind: opsv1.BackgroundToolOp},
		}
		if last = c.Create(ctx, probe); last != nil {
			return false, nil
		}
		defer func() { _ = c.Delete(context.Background(), probe, client.Preconditions{UID: &probe.UID}) }()
		probe.Status.Phase = opsv1.PhaseProvisioning
		// Accepted means not enforced yet: try again with a new probe.
		last = c.Status().Update(ctx, probe)
		return last != nil && apierrors.IsForbidden(last) && strings.Contains(last.Error(), "only the ops-operator controller"), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the admission policy to be enforced (last answer: %v): %w", last, err)
	}
	return nil
}

// ReadManifests decodes every YAML document of the .yaml files in dir
// except kustomization.yaml.
func ReadManifests(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs, err := DecodeManifests(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, docs...)
	}
	return out, nil
}

// DecodeManifests decodes every non-empty YAML or JSON document of data.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
