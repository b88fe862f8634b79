package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/manager"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// TestMetricsAuth: a manager serving metrics as a Deployment does
// (--metrics-secure: HTTPS, TokenReview and SubjectAccessReview against the
// API server) answers 401 without a valid token, 403 to a service account
// without the shipped ops-operator-metrics-reader role, and the metrics to
// one bound to it. The manager runs under the shipped manager and
// metrics-auth roles, not as an admin, so the roles in config/rbac are what
// is tested.
func TestMetricsAuth(t *testing.T) {
	ctx := testContext(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ns := newNamespace(t)

	// The scrapers: "reader" bound to the shipped reader role, "stranger" to nothing.
	readerRole := shippedClusterRole(ctx, t, cs, "metrics_reader_role.yaml")
	for _, sa := range []string{"reader", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bindClusterRole(ctx, t, cs, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: readerRole + ":" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: readerRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: ns}},
	})
	readerUser := serviceaccountUser(ns, "reader")
	waitAllowed(ctx, t, cs, authorizationv1.SubjectAccessReviewSpec{User: readerUser,
		Groups:                []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}})
	readerToken, strangerToken := saToken(ctx, t, cs, ns, "reader"), saToken(ctx, t, cs, ns, "stranger")
	// The API server itself accepts both tokens (TokenRequest and TokenReview
	// work in envtest's kube-apiserver), so any 401 below is the filter's.
	for _, tok := range []string{readerToken, strangerToken} {
		tr, err := cs.AuthenticationV1().TokenReviews().Create(ctx,
			&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
		if err != nil || !tr.Status.Authenticated {
			t.Fatalf("the API server does not authenticate a requested token: %v %+v", err, tr.Status)
		}
	}

	addr := freeLoopbackAddr(t)
	// Metrics served as in a cluster (cmd/manager's defaults), on addr.
	m := startManagerAs(t, metricsManagerConfig(ctx, t, cs, ns), func(o *manager.Options) {
		o.MetricsAddr, o.MetricsSecure = addr, true
	})
	defer m.stop(t)
	url := "https://" + addr + "/metrics"
	c := metricsHTTPClient()
	// Wait for the listener; an unauthenticated request answers once it is up.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, _, err := scrape(ctx, c, url, "")
		return err == nil, nil
	}); err != nil {
		t.Fatalf("metrics server on %s never answered: %v", addr, err)
	}

	// It is TLS, with the self-signed certificate for 127.0.0.1.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed, checked below
	if err != nil {
		t.Fatal(err)
	}
	cert := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("metrics certificate: %v", err)
	}
	// Plain HTTP gets nothing.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "controller_runtime_") {
			t.Errorf("plain HTTP: %d, %q", resp.StatusCode, body)
		}
	}

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"not a token", "not-a-token", http.StatusUnauthorized},
		{"a token of a service account without the reader role", strangerToken, http.StatusForbidden},
	} {
		code, body, err := scrape(ctx, c, url, tc.token)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if code != tc.want || strings.Contains(body, "controller_runtime_") {
			t.Errorf("%s: got %d %q, want %d without metrics", tc.name, code, trim(body), tc.want)
		}
	}

	// The reader gets the metrics: controller-runtime's at once, and ours.
	// The meerkat_ops_* series are labelled vectors, absent until something
	// happens (and the registry is process-global, so an earlier test may
	// have filled some already): register an operation in this namespace and
	// wait for its admission to be counted under this namespace's label.
	reg := newSession(ctx, t, ns, "metrics", opsv1.OpsSessionSpec{MaxCompleted: ptr.To[int32](10)})
	if err := reg.RegisterOperation(ctx, opsclient.OperationSpec{
		ID: opsclient.NewOperationID(), Kind: opsv1.BackgroundToolOp, DisplayName: "scraped"}); err != nil {
		t.Fatal(err)
	}
	admitted := fmt.Sprintf(`meerkat_ops_admissions_total{kind="%s",namespace="%s"} 1`, opsv1.BackgroundToolOp, ns)
	var code int
	var body string
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		code, body, err = scrape(ctx, c, url, readerToken)
		return err == nil && code == http.StatusOK && strings.Contains(body, admitted), nil
	}); err != nil {
		t.Fatalf("reader: %d %v, want 200 with %q in:\n%s", code, err, admitted, trim(body))
	}
	for _, want := range []string{"controller_runtime_reconcile_total", "workqueue_adds_total", "meerkat_ops_operations{"} {
		if !strings.Contains(body, want) {
			t.Errorf("reader's metrics lack %s", want)
		}
	}
}

// metricsManagerConfig is the manager's identity: the service account
// ops-operator-manager of ns (impersonated by the admin), bound as
// config/rbac binds it (role_binding.yaml and metrics_auth_role_binding.yaml,
// with kustomize's namespace rewrite) to the shipped ClusterRoles. Without
// metrics_auth_role.yaml its TokenReviews are refused and every scrape gets
// 401 (and the manager logs "Failed to make webhook authenticator request").
// To switch to the suite's identities, return
// testenv.User(testEnv, controlplane.Manager, name) here instead.
func metricsManagerConfig(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) *rest.Config {
	t.Helper()
	const sa = "ops-operator-manager"
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	shippedClusterRole(ctx, t, cs, "role.yaml")
	shippedClusterRole(ctx, t, cs, "metrics_auth_role.yaml")
	for _, file := range []string{"role_binding.yaml", "metrics_auth_role_binding.yaml"} {
		var b rbacv1.ClusterRoleBinding
		readShipped(t, file, &b)
		b.Name += ":" + ns
		for i := range b.Subjects {
			if b.Subjects[i].Kind == rbacv1.ServiceAccountKind && b.Subjects[i].Namespace == "system" {
				b.Subjects[i].Namespace = ns
			}
		}
		bindClusterRole(ctx, t, cs, &b)
	}
	user := serviceaccountUser(ns, sa)
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"},
		{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"},
		{Group: opsv1.GroupVersion.Group, Resource: "operations", Verb: "watch"},
	} {
		waitAllowed(ctx, t, cs, authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &ra})
	}
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}

func serviceaccountUser(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }

// readShipped decodes the one object in config/rbac/<file> into obj,
// strictly, so a misspelt field fails here rather than being dropped.
func readShipped(t *testing.T, file string, obj any) {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.Root(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if err != nil {
			t.Fatalf("%s: no object: %v", file, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue // a leading "---"
		}
		if err := utilyaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return
	}
}

// shippedClusterRole reads the ClusterRole in config/rbac/<file>, checks
// that the control plane holds it as shipped (controlplane.Install applies
// every shipped ClusterRole), and returns its name.
func shippedClusterRole(ctx context.Context, t *testing.T, cs kubernetes.Interface, file string) string {
	t.Helper()
	var role rbacv1.ClusterRole
	readShipped(t, file, &role)
	if role.Kind != "ClusterRole" || role.Name == "" || len(role.Rules) == 0 {
		t.Fatalf("%s is not a ClusterRole with rules: %+v", file, role)
	}
	cur, err := cs.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the installed %s: %v", file, err)
	}
	if !equality.Semantic.DeepEqual(cur.Rules, role.Rules) {
		t.Fatalf("the installed ClusterRole %s differs from %s:\n%+v\n%+v", role.Name, file, cur.Rules, role.Rules)
	}
	return role.Name
}

func bindClusterRole(ctx context.Context, t *testing.T, cs kubernetes.Interface, b *rbacv1.ClusterRoleBinding) {
	t.Helper()
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding %s: %v", b.Name, err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{})
	})
}

// waitAllowed waits until the API server's RBAC authorizer has caught up with
// new bindings: the metrics filter caches a denial for 30 s.
func waitAllowed(ctx context.Context, t *testing.T, cs kubernetes.Interface, spec authorizationv1.SubjectAccessReviewSpec) {
	t.Helper()
	var last *authorizationv1.SubjectAccessReview
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx,
			&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		last = r
		return r.Status.Allowed, nil
	}); err != nil {
		t.Fatalf("%s is not allowed %+v %+v: %v (%+v)", spec.User, spec.ResourceAttributes, spec.NonResourceAttributes, err, last)
	}
}

// saToken is a bound token of the service account, from the TokenRequest API
// (what `kubectl create token` does).
func saToken(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// freeLoopbackAddr is a 127.0.0.1 address with a port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// metricsHTTPClient trusts the self-signed certificate, as `curl -k` does.
func metricsHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed certificate
	}}
}

func scrape(ctx context.Context, c *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func trim(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}
