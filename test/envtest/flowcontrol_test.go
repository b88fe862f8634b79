package envtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// The manager's API Priority and Fairness configuration (config/flowcontrol,
// dist/chart/templates/flowcontrol): the bundle and the chart ship the same
// priority level and rules, with the subject each installs, and once
// applied the API server classifies the manager's ServiceAccount's requests
// into them.

// flowSchemaSubject is the ServiceAccount a FlowSchema document matches.
func flowSchemaSubject(t *testing.T, fs *unstructured.Unstructured) (ns, name string) {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(fs.Object, "spec", "rules")
	if len(rules) != 1 {
		t.Fatalf("%s: %d rules, want 1", docKey(fs), len(rules))
	}
	subjects, _, _ := unstructured.NestedSlice(rules[0].(map[string]any), "subjects")
	if len(subjects) != 1 {
		t.Fatalf("%s: %d subjects, want 1", docKey(fs), len(subjects))
	}
	sa, _, _ := unstructured.NestedStringMap(subjects[0].(map[string]any), "serviceAccount")
	return sa["namespace"], sa["name"]
}

// withoutSubject is a FlowSchema's spec with the subject's ServiceAccount
// blanked, to compare what the installs share.
func withoutSubject(t *testing.T, fs *unstructured.Unstructured) map[string]any {
	t.Helper()
	c := fs.DeepCopy()
	rules, _, _ := unstructured.NestedSlice(c.Object, "spec", "rules")
	rule := rules[0].(map[string]any)
	subjects, _, _ := unstructured.NestedSlice(rule, "subjects")
	subj := subjects[0].(map[string]any)
	delete(subj, "serviceAccount")
	_ = unstructured.SetNestedSlice(rule, []any{subj}, "subjects")
	_ = unstructured.SetNestedSlice(c.Object, []any{rule}, "spec", "rules")
	delete(c.Object["spec"].(map[string]any)["priorityLevelConfiguration"].(map[string]any), "name")
	return c.Object["spec"].(map[string]any)
}

// TestFlowControlManifests: the bundle carries config/flowcontrol with the
// subject set to the ServiceAccount it installs (also in another
// namespace: kustomize's namespace transformer alone would leave the
// subject behind); the chart renders the same spec with the release's
// ServiceAccount, and nothing with flowControl.enabled=false.
func TestFlowControlManifests(t *testing.T) {
	ctx := testContext(t)
	root := testenv.Root()
	config := decodeFiles(t, filepath.Join(root, "config", "flowcontrol"))
	wantPL := theDoc(t, config, "PriorityLevelConfiguration", managerName)
	wantFS := theDoc(t, config, "FlowSchema", managerName)

	// The bundle, as shipped and with the operator's namespace changed.
	for _, ns := range []string{"ops-operator-system", "elsewhere"} {
		tmp := t.TempDir()
		runCmd(t, ctx, nil, "cp", "-R", filepath.Join(root, "config"), filepath.Join(tmp, "config"))
		kz := filepath.Join(tmp, "config", "operator", "kustomization.yaml")
		data, err := os.ReadFile(kz)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kz, []byte(strings.Replace(string(data), "namespace: ops-operator-system", "namespace: "+ns, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		docs := decodeDocs(t, []byte(runCmd(t, ctx, nil, kubectl, "kustomize", filepath.Join(tmp, "config", "default"))))
		pl := theDoc(t, docs, "PriorityLevelConfiguration", managerName)
		if !reflect.DeepEqual(pl.Object, wantPL.Object) {
			t.Errorf("namespace %s: the bundle's PriorityLevelConfiguration differs from config/flowcontrol", ns)
		}
		fs := theDoc(t, docs, "FlowSchema", managerName)
		if fs.GetNamespace() != "" || pl.GetNamespace() != "" {
			t.Errorf("namespace %s: cluster-scoped flow control objects got a namespace", ns)
		}
		if gotNS, gotName := flowSchemaSubject(t, fs); gotNS != ns || gotName != managerName {
			t.Errorf("namespace %s: the bundle's FlowSchema matches ServiceAccount %s/%s, want %s/%s", ns, gotNS, gotName, ns, managerName)
		}
		if !reflect.DeepEqual(withoutSubject(t, fs), withoutSubject(t, wantFS)) {
			t.Errorf("namespace %s: the bundle's FlowSchema differs from config/flowcontrol beyond its subject", ns)
		}
	}

	// The chart: the same spec, the release's ServiceAccount.
	docs := decodeDocs(t, []byte(helmTemplate(t, ctx, chartDir(), "meerkat", "team", "serviceAccount.name=agent-manager")))
	pl := theDoc(t, docs, "PriorityLevelConfiguration", "meerkat-ops-operator-manager")
	if !reflect.DeepEqual(pl.Object["spec"], wantPL.Object["spec"]) {
		t.Errorf("the chart's PriorityLevelConfiguration spec differs from config/flowcontrol:\n got %v\nwant %v", pl.Object["spec"], wantPL.Object["spec"])
	}
	fs := theDoc(t, docs, "FlowSchema", "meerkat-ops-operator-manager")
	if ns, name := flowSchemaSubject(t, fs); ns != "team" || name != "agent-manager" {
		t.Errorf("the chart's FlowSchema matches ServiceAccount %s/%s, want team/agent-manager", ns, name)
	}
	if pln, _, _ := unstructured.NestedString(fs.Object, "spec", "priorityLevelConfiguration", "name"); pln != pl.GetName() {
		t.Errorf("the chart's FlowSchema points at priority level %q, want %q", pln, pl.GetName())
	}
	if !reflect.DeepEqual(withoutSubject(t, fs), withoutSubject(t, wantFS)) {
		t.Errorf("the chart's FlowSchema differs from config/flowcontrol beyond its subject and names")
	}
	off := decodeDocs(t, []byte(helmTemplate(t, ctx, chartDir(), "meerkat", "team", "flowControl.enabled=false")))
	if got := ofKind(off, "FlowSchema", "PriorityLevelConfiguration"); len(got) != 0 {
		t.Errorf("flowControl.enabled=false still renders %v", names(got))
	}
}

// checkFlowControl: once applied, the API server classifies a request of
// ServiceAccount ns/sa (impersonated by the installer) with the FlowSchema
// fsName into its own priority level, which its debug dump lists. APF puts
// the classification in every response's X-Kubernetes-PF-* headers.
func checkFlowControl(t *testing.T, ctx context.Context, kubeconfig, fsName, ns, sa string) {
	t.Helper()
	g := NewWithT(t)
	data, err := os.ReadFile(kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	g.Expect(err).NotTo(HaveOccurred())

	fs, pl := &flowcontrolv1.FlowSchema{}, &flowcontrolv1.PriorityLevelConfiguration{}
	installer, err := rest.HTTPClientFor(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	get := func(hc *http.Client, path string) (*http.Response, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := hc.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.Body.Close()).To(Succeed())
		return resp, string(body)
	}
	decode := func(path string, into any) {
		resp, body := get(installer, path)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), body)
		g.Expect(json.Unmarshal([]byte(body), into)).To(Succeed())
	}
	decode("/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/"+fsName, fs)
	decode("/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations/"+fs.Spec.PriorityLevelConfiguration.Name, pl)

	// The API server's flow control controller marks the schema not
	// dangling once it sees its priority level.
	g.Eventually(func() string {
		decode("/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/"+fsName, fs)
		for _, c := range fs.Status.Conditions {
			if c.Type == flowcontrolv1.FlowSchemaConditionDangling {
				return string(c.Status)
			}
		}
		return ""
	}).WithTimeout(30*time.Second).Should(Equal("False"), "FlowSchema %s's Dangling condition", fsName)

	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	manager, err := rest.HTTPClientFor(as)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() []string {
		resp, _ := get(manager, "/apis/ops.meerkat.dev/v1alpha1/operations?limit=1")
		return []string{resp.Header.Get("X-Kubernetes-PF-FlowSchema-UID"), resp.Header.Get("X-Kubernetes-PF-PriorityLevel-UID")}
	}).WithTimeout(30*time.Second).Should(Equal([]string{string(fs.UID), string(pl.UID)}),
		"a request of %s/%s is classified by FlowSchema %s into priority level %s", ns, sa, fs.Name, pl.Name)

	resp, dump := get(installer, "/debug/api_priority_and_fairness/dump_priority_levels")
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), dump)
	g.Expect(dump).To(ContainSubstring(pl.Name))
}
