package envtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// The two ways to install the operator on a cluster: the kustomize bundle
// (`make build-installer`, dist/install.yaml) and the Helm chart (dist/chart,
// rendered by bin/helm from `make helm`). Each is rendered as a user would,
// applied server-side by a cluster admin to this control plane (the CRDs,
// the policy and the ClusterRoles are already there, with the same content,
// so applying them again must work and changes nothing the other tests
// rely on), and checked: the Deployment runs the image asked for as the
// ServiceAccount installed with it, and that ServiceAccount is the
// controller by RBAC. No pod runs: there is no kubelet.

// Kinds of the installed RBAC.
const (
	kindClusterRole        = "ClusterRole"
	kindClusterRoleBinding = "ClusterRoleBinding"
)

// installerKubeconfig writes a kubeconfig for a new system:masters user,
// the cluster admin who installs.
func installerKubeconfig(t *testing.T, name string) string {
	t.Helper()
	u, err := testEnv.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCmd runs a command and returns its standard output; it fails the test,
// with standard error, when the command fails.
func runCmd(t *testing.T, ctx context.Context, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// decodeDocs decodes every non-empty YAML document.
func decodeDocs(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	out, err := controlplane.DecodeManifests(data)
	if err != nil {
		t.Fatalf("decoding YAML: %v", err)
	}
	return out
}

// decodeFiles decodes the documents of the .yaml files of dir but
// kustomization.yaml.
func decodeFiles(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := controlplane.ReadManifests(dir)
	if err != nil || len(out) == 0 {
		t.Fatalf("no YAML in %s (%v)", dir, err)
	}
	return out
}

func docKey(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// docsByKey indexes docs by kind, namespace and name; a duplicate fails.
func docsByKey(t *testing.T, docs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, d := range docs {
		if _, dup := m[docKey(d)]; dup {
			t.Errorf("%s rendered twice", docKey(d))
		}
		m[docKey(d)] = d
	}
	return m
}

func ofKind(docs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, d := range docs {
		if slices.Contains(kinds, d.GetKind()) {
			out = append(out, d)
		}
	}
	return out
}

func names(docs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		out = append(out, docKey(d))
	}
	sort.Strings(out)
	return out
}

// theDoc is the one object of kind and name in docs; it fails unless there is exactly one.
func theDoc(t *testing.T, docs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, d := range docs {
		if d.GetKind() == kind && d.GetName() == name {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %s, rendered %d; rendered: %v", kind, name, len(found), names(docs))
	}
	return found[0]
}

func nestedString(t *testing.T, u *unstructured.Unstructured, path ...string) string {
	t.Helper()
	s, _, err := unstructured.NestedString(u.Object, path...)
	if err != nil {
		t.Fatalf("%s: %s: %v", docKey(u), strings.Join(path, "."), err)
	}
	return s
}

// managerContainer is the Deployment's container named manager.
func managerContainer(t *testing.T, dep *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == "manager" {
			return m
		}
	}
	t.Fatalf("%s has no container named manager", docKey(dep))
	return nil
}

func containerArgs(c map[string]any) []string {
	var out []string
	if args, ok := c["args"].([]any); ok {
		for _, a := range args {
			out = append(out, fmt.Sprint(a))
		}
	}
	return out
}

// boundToManagerRole reports whether a ClusterRoleBinding in docs binds
// ServiceAccount ns/sa to the ops-operator-manager ClusterRole.
func boundToManagerRole(docs []*unstructured.Unstructured, ns, sa string) bool {
	for _, b := range ofKind(docs, kindClusterRoleBinding) {
		if k, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind"); k != kindClusterRole {
			continue
		}
		if n, _, _ := unstructured.NestedString(b.Object, "roleRef", "name"); n != managerName {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		for _, s := range subjects {
			m, _ := s.(map[string]any)
			if m["kind"] == "ServiceAccount" && m["name"] == sa && m["namespace"] == ns {
				return true
			}
		}
	}
	return false
}

// installed is what a test checks on the control plane after applying.
type installed struct {
	ns, deployment, image, serviceAccount string
	// flowSchema is the manager's FlowSchema (checkFlowControl).
	flowSchema string
}

// checkInstalled reads back, as the installer, the Deployment and the
// ServiceAccount's bindings from the API server, and asks RBAC what the
// ServiceAccount may do: the controller's `control` verb (what
// config/policy asks of the controller) and leases in its own namespace
// only.
func checkInstalled(t *testing.T, ctx context.Context, kubeconfig string, want installed) {
	t.Helper()
	kc := func(args ...string) string {
		t.Helper()
		return runCmd(t, ctx, nil, kubectl, withKubeconfig(kubeconfig, args...)...)
	}
	out := kc("-n", want.ns, "get", "deployment", want.deployment, "-o",
		"jsonpath={.spec.template.spec.containers[?(@.name=='manager')].image} {.spec.template.spec.serviceAccountName}")
	if got := want.image + " " + want.serviceAccount; out != got {
		t.Errorf("Deployment %s/%s: image and ServiceAccount %q, want %q", want.ns, want.deployment, out, got)
	}
	kc("-n", want.ns, "get", "serviceaccount", want.serviceAccount)

	var live []*unstructured.Unstructured
	list := decodeDocs(t, []byte(kc("get", "clusterrolebindings", "-o", "json")))
	for _, l := range list {
		items, _, _ := unstructured.NestedSlice(l.Object, "items")
		for _, i := range items {
			if m, ok := i.(map[string]any); ok {
				live = append(live, &unstructured.Unstructured{Object: m})
			}
		}
	}
	if !boundToManagerRole(live, want.ns, want.serviceAccount) {
		t.Errorf("no ClusterRoleBinding on the API server binds ServiceAccount %s/%s to ClusterRole ops-operator-manager", want.ns, want.serviceAccount)
	}

	as := "system:serviceaccount:" + want.ns + ":" + want.serviceAccount
	// In the manager's namespace and in another one.
	other := metav1.NamespaceDefault
	for _, c := range []struct {
		ns      string
		request string // the arguments of kubectl auth can-i
		allowed bool
	}{
		{want.ns, "control operations.ops.meerkat.dev --subresource=status", true},
		{other, "control opssessions.ops.meerkat.dev --subresource=status", true},
		{other, "list operations.ops.meerkat.dev", true},
		{other, "create operations.ops.meerkat.dev", false},
		{want.ns, "create tokenreviews.authentication.k8s.io", true},
		{want.ns, "create leases.coordination.k8s.io", true},
		{other, "create leases.coordination.k8s.io", false},
	} {
		wantAnswer := "no"
		if c.allowed {
			wantAnswer = "yes"
		}
		if got := canI(ctx, t, kubeconfig, c.ns, append(strings.Fields(c.request), "--as", as)); got != wantAnswer {
			t.Errorf("kubectl auth can-i -n %s --as %s %s: %q, want %q", c.ns, as, c.request, got, wantAnswer)
		}
	}
	checkFlowControl(t, ctx, kubeconfig, want.flowSchema, want.ns, want.serviceAccount)
}

// apply applies a rendering server-side as the installer.
func apply(t *testing.T, ctx context.Context, kubeconfig, file, manager string) {
	t.Helper()
	runCmd(t, ctx, nil, kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts",
		"--field-manager", manager, "-f", file)
}

// TestInstallBundle renders the bundle as `make build-installer` does,
// checks what it holds and applies it into its namespace.
func TestInstallBundle(t *testing.T) {
	ctx := testContext(t)
	root := testenv.Root()
	const img = "registry.example.test/meerkat/ops-operator:v0.0.0-bundle"
	const ns, name = "ops-operator-system", managerName
	bundle := filepath.Join(t.TempDir(), "install.yaml")
	runCmd(t, ctx, []string{"KUBECTL=" + kubectl}, "bash", filepath.Join(root, "hack", "build-installer.sh"), img, bundle)
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeDocs(t, data)

	// Everything config/ ships, as it is there (the bundle is config/default).
	for _, want := range append(append(decodeFiles(t, filepath.Join(root, "config", "crd", "bases")),
		decodeFiles(t, filepath.Join(root, "config", "policy"))...), clusterRoles(decodeFiles(t, filepath.Join(root, "config", "rbac")))...) {
		got := theDoc(t, docs, want.GetKind(), want.GetName())
		if !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("the bundle's %s differs from config/", docKey(want))
		}
	}
	for _, k := range []struct{ kind, name string }{
		{"Namespace", ns}, {"ServiceAccount", name}, {"Role", "ops-operator-leader-election"},
		{"RoleBinding", "ops-operator-leader-election"}, {kindClusterRoleBinding, "ops-operator-metrics-auth"},
		{"Service", "ops-operator-metrics"}, {"Deployment", name},
	} {
		clusterScoped := k.kind == "Namespace" || k.kind == kindClusterRoleBinding
		if d := theDoc(t, docs, k.kind, k.name); !clusterScoped && d.GetNamespace() != ns {
			t.Errorf("%s: namespace %q, want %q", docKey(d), d.GetNamespace(), ns)
		}
	}
	dep := theDoc(t, docs, "Deployment", name)
	if got := managerContainer(t, dep)["image"]; got != img {
		t.Errorf("bundle Deployment image %v, want %s", got, img)
	}
	if !boundToManagerRole(docs, ns, name) {
		t.Errorf("the bundle binds no ServiceAccount %s/%s to ops-operator-manager", ns, name)
	}

	// An image without a tag is :latest.
	untagged := filepath.Join(t.TempDir(), "untagged.yaml")
	runCmd(t, ctx, []string{"KUBECTL=" + kubectl}, "bash", filepath.Join(root, "hack", "build-installer.sh"), "localhost:5000/ops-operator", untagged)
	if data, _ := os.ReadFile(untagged); !bytes.Contains(data, []byte("image: localhost:5000/ops-operator:latest\n")) {
		t.Errorf("build-installer with an untagged image: want image localhost:5000/ops-operator:latest in the bundle")
	}

	kubeconfig := installerKubeconfig(t, "installer-bundle")
	apply(t, ctx, kubeconfig, bundle, "ops-operator-install-test-bundle")
	checkInstalled(t, ctx, kubeconfig, installed{ns: ns, deployment: name, image: img, serviceAccount: name, flowSchema: managerName})
}

func clusterRoles(docs []*unstructured.Unstructured) []*unstructured.Unstructured {
	return ofKind(docs, kindClusterRole)
}

// helmBin is bin/helm (`make helm`).
func helmBin(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{testenv.Assets(), filepath.Join(testenv.Root(), "bin")} {
		if p := filepath.Join(dir, "helm"); fileExists(p) {
			return p
		}
	}
	t.Fatalf("bin/helm is missing: run `make helm`")
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// helmRun runs bin/helm with its caches and configuration in a temporary folder.
func helmRun(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	home := t.TempDir()
	env := []string{"HELM_CACHE_HOME=" + filepath.Join(home, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data")}
	return runCmd(t, ctx, env, helmBin(t), args...)
}

// helmTemplate renders dist/chart as release name in namespace ns.
func helmTemplate(t *testing.T, ctx context.Context, chart, release, ns string, set ...string) string {
	t.Helper()
	args := make([]string, 0, 5+2*len(set))
	args = append(args, "template", release, chart, "--namespace", ns)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helmRun(t, ctx, args...)
}

func chartDir() string { return filepath.Join(testenv.Root(), "dist", "chart") }

// TestInstallChartMatchesConfig: the chart's CRDs, admission policies and
// ClusterRoles render to exactly the documents of config/ (`make chart`
// copies them), and its leader election Role has the rules of config/rbac's.
func TestInstallChartMatchesConfig(t *testing.T) {
	ctx := testContext(t)
	if diffs := chartDrift(t, ctx, chartDir()); len(diffs) > 0 {
		t.Errorf("dist/chart has drifted from config/ (run `make chart`):\n%s", strings.Join(diffs, "\n"))
	}

	// The check sees drift: a chart with a changed CRD, a missing policy
	// binding and an extra ClusterRole rule.
	stale := filepath.Join(t.TempDir(), "chart")
	runCmd(t, ctx, nil, "cp", "-R", chartDir(), stale)
	edit := func(file, old, repl string) {
		p := filepath.Join(stale, "templates", file)
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte(old)) {
			t.Fatalf("%s: no %q to edit (%v)", file, old, err)
		}
		if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(repl), 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("crd/ops.meerkat.dev_operations.yaml", "served: true", "served: false")
	edit("policy/controller_transitions.yaml", "validationActions: [Deny]", "validationActions: [Warn]")
	edit("rbac/agent_role.yaml", "verbs: [create]", "verbs: [create, delete]")
	edit("rbac/leader_election_role.yaml", "verbs: [create, patch]", "verbs: [create]")
	diffs := chartDrift(t, ctx, stale)
	for _, want := range []string{"CustomResourceDefinition /operations.ops.meerkat.dev", "ValidatingAdmissionPolicyBinding /",
		"ClusterRole /ops-operator-agent", "leader election Role"} {
		if !slices.ContainsFunc(diffs, func(d string) bool { return strings.Contains(d, want) }) {
			t.Errorf("a drifted chart's %s went unnoticed; found: %v", want, diffs)
		}
	}
}

// chartDrift renders chart with its default values and lists where its
// CRDs, policies and ClusterRoles differ from config/.
func chartDrift(t *testing.T, ctx context.Context, chart string) []string {
	t.Helper()
	root := testenv.Root()
	docs := decodeDocs(t, []byte(helmTemplate(t, ctx, chart, "drift", "drift")))
	for _, d := range ofKind(docs, "CustomResourceDefinition") {
		// The chart's own addition: keep the CRDs (and their objects) on uninstall.
		ann := d.GetAnnotations()
		if ann["helm.sh/resource-policy"] != "keep" {
			t.Errorf("chart %s: want annotation helm.sh/resource-policy: keep (crds.keep defaults to true)", docKey(d))
		}
		delete(ann, "helm.sh/resource-policy")
		d.SetAnnotations(ann)
	}
	var diffs []string
	compare := func(what string, got, want []*unstructured.Unstructured) {
		g, w := docsByKey(t, got), docsByKey(t, want)
		for k, wd := range w {
			gd, ok := g[k]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("%s: %s is missing from the chart", what, k))
			case !reflect.DeepEqual(gd.Object, wd.Object):
				diffs = append(diffs, fmt.Sprintf("%s: %s differs from config/", what, k))
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: %s is in the chart, not in config/", what, k))
			}
		}
	}
	compare("config/crd/bases", ofKind(docs, "CustomResourceDefinition"), decodeFiles(t, filepath.Join(root, "config", "crd", "bases")))
	compare("config/policy", ofKind(docs, "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"),
		decodeFiles(t, filepath.Join(root, "config", "policy")))
	rbac := decodeFiles(t, filepath.Join(root, "config", "rbac"))
	compare("config/rbac", clusterRoles(docs), clusterRoles(rbac))

	wantRole := theDoc(t, rbac, "Role", "ops-operator-leader-election")
	gotRole := theDoc(t, docs, "Role", "drift-ops-operator-leader-election")
	if gotRole.GetNamespace() != "drift" {
		diffs = append(diffs, fmt.Sprintf("leader election Role in namespace %q, want the release's", gotRole.GetNamespace()))
	}
	if !reflect.DeepEqual(gotRole.Object["rules"], wantRole.Object["rules"]) {
		diffs = append(diffs, "the chart's leader election Role has other rules than config/rbac/leader_election_role.yaml")
	}
	sort.Strings(diffs)
	return diffs
}

// TestInstallHelmChart renders the chart with a few value variations and
// applies one, in its own release namespace, to the control plane.
func TestInstallHelmChart(t *testing.T) {
	ctx := testContext(t)
	chart := chartDir()
	helmRun(t, ctx, "lint", "--strict", chart)

	// Default values: the chart's appVersion image, CRDs included and kept,
	// leader election with its Role, the metrics Service, the manager flags.
	def := decodeDocs(t, []byte(helmTemplate(t, ctx, chart, "ops-operator", "ops")))
	dep := theDoc(t, def, "Deployment", "ops-operator")
	c := managerContainer(t, dep)
	if c["image"] != "ghcr.io/meerkat-ops/ops-operator:dev" {
		t.Errorf("default image %v, want ghcr.io/meerkat-ops/ops-operator:dev (the chart's appVersion)", c["image"])
	}
	wantArgs := []string{"--leader-elect", "--metrics-bind-address=:8443", "--metrics-secure=true",
		"--health-probe-bind-address=:8081", "--kube-api-qps=-1", "--kube-api-burst=0",
		"--session-concurrent-reconciles=16", "--operation-concurrent-reconciles=16",
		"--session-counts-interval=10s", "--memory-limit-ratio=0.9"}
	if got := containerArgs(c); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("default manager args\n got %q\nwant %q", got, wantArgs)
	}
	if got := len(ofKind(def, "CustomResourceDefinition")); got != 2 {
		t.Errorf("default values render %d CRDs, want 2", got)
	}
	theDoc(t, def, "Role", "ops-operator-leader-election")
	svc := theDoc(t, def, "Service", "ops-operator-metrics")
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	for k, v := range sel {
		if podLabels[k] != v {
			t.Errorf("metrics Service selects %s=%s, the manager's pods have %q", k, v, podLabels[k])
		}
	}
	if !boundToManagerRole(def, "ops", "ops-operator") {
		t.Errorf("default values bind no ServiceAccount ops/ops-operator to ops-operator-manager")
	}

	// crds.install=false drops the CRDs, nothing else; other flags change.
	noCRDs := decodeDocs(t, []byte(helmTemplate(t, ctx, chart, "ops-operator", "ops", "crds.install=false",
		"leaderElection.enabled=false", "manager.metrics.bindAddress=0", "manager.kubeAPIQPS=50",
		"manager.extraArgs={--zap-log-level=debug}", "replicas=2")))
	if got := ofKind(noCRDs, "CustomResourceDefinition"); len(got) != 0 {
		t.Errorf("crds.install=false still renders %v", names(got))
	}
	for _, k := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", kindClusterRole, kindClusterRoleBinding} {
		if a, b := len(ofKind(noCRDs, k)), len(ofKind(def, k)); a != b || a == 0 {
			t.Errorf("crds.install=false renders %d %s, default values %d", a, k, b)
		}
	}
	if got := ofKind(noCRDs, "Role", "RoleBinding", "Service"); len(got) != 0 {
		t.Errorf("without leader election and metrics, still rendered %v", names(got))
	}
	dep = theDoc(t, noCRDs, "Deployment", "ops-operator")
	args := containerArgs(managerContainer(t, dep))
	for _, want := range []string{"--kube-api-qps=50", "--metrics-bind-address=0", "--zap-log-level=debug"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if slices.Contains(args, "--leader-elect") {
		t.Errorf("leaderElection.enabled=false still passes --leader-elect: %q", args)
	}
	if r, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("replicas=2 rendered %v replicas", r)
	}

	// A custom image and ServiceAccount name, in another release namespace,
	// applied server-side with the CRDs.
	ns := newNamespace(t)
	const img = "registry.example.test/chart/ops-operator:v9.9.9"
	rendered := helmTemplate(t, ctx, chart, "meerkat", ns, "image.repository=registry.example.test/chart/ops-operator",
		"image.tag=v9.9.9", "image.pullPolicy=Always", "serviceAccount.name=meerkat-manager")
	docs := decodeDocs(t, []byte(rendered))
	dep = theDoc(t, docs, "Deployment", "meerkat-ops-operator")
	c = managerContainer(t, dep)
	if c["image"] != img || c["imagePullPolicy"] != "Always" {
		t.Errorf("custom image: rendered %v (%v), want %s (Always)", c["image"], c["imagePullPolicy"], img)
	}
	for _, d := range docs {
		namespaced := !slices.Contains([]string{"CustomResourceDefinition", "ValidatingAdmissionPolicy",
			"ValidatingAdmissionPolicyBinding", kindClusterRole, kindClusterRoleBinding, "FlowSchema", "PriorityLevelConfiguration"}, d.GetKind())
		if namespaced && d.GetNamespace() != ns {
			t.Errorf("%s is not in the release namespace %s", docKey(d), ns)
		}
	}
	if sa := nestedString(t, dep, "spec", "template", "spec", "serviceAccountName"); sa != "meerkat-manager" {
		t.Errorf("serviceAccountName %q, want meerkat-manager", sa)
	}
	file := filepath.Join(t.TempDir(), "chart.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := installerKubeconfig(t, "installer-chart")
	apply(t, ctx, kubeconfig, file, "ops-operator-install-test-chart")
	checkInstalled(t, ctx, kubeconfig, installed{ns: ns, deployment: "meerkat-ops-operator", image: img, serviceAccount: "meerkat-manager", flowSchema: "meerkat-ops-operator-manager"})
}
