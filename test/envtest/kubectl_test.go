package envtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// kubectlRun runs the v1.37.2 kubectl from bin/ against the envtest API server.
// It runs as a person with the editor role.
func kubectlRun(ctx context.Context, ns string, args ...string) (string, error) {
	return kubectlAs(ctx, kubeconf, ns, args...)
}

func kubectlAs(ctx context.Context, kubeconfig, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, kubectl, withKubeconfig(kubeconfig, append([]string{"-n", ns}, args...)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubectlApplyCancelAndWait is the path of a person with kubectl: apply
// the samples, see the printer columns, cancel by patching spec, and wait on
// the Terminal condition.
func TestKubectlApplyCancelAndWait(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	kc := func(args ...string) string {
		t.Helper()
		out, err := kubectlRun(ctx, ns, args...)
		g.Expect(err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), out)
		return out
	}

	samples, _ := filepath.Abs("../../config/samples")
	kc("apply", "-f", samples)
	kc("wait", "--for=jsonpath={.status.phase}=Provisioning", "operation/index-repository", "--timeout=60s")

	wide := kc("get", "ops", "-o", "wide")
	for _, col := range []string{"PHASE", "SESSION", "KIND", "PROGRESS", "AGE", "index-repository", "Provisioning", sampleSession, "BackgroundToolOp"} {
		g.Expect(wide).To(ContainSubstring(col))
	}
	both := kc("get", "meerkat")
	g.Expect(both).To(ContainSubstring("opssession.ops.meerkat.dev/demo-session"))
	g.Expect(both).To(ContainSubstring("operation.ops.meerkat.dev/member-alpha"))

	// kstatus: an admitted operation is Reconciling until it runs.
	kc("wait", "--for=condition=Reconciling", "operation/index-repository", "--timeout=30s")

	kc("patch", "operation/index-repository", "--type=merge", "-p", `{"spec":{"cancel":{"reason":"changed my mind"}}}`)
	kc("wait", "--for=condition=Terminal", "operation/index-repository", "--timeout=60s")
	g.Expect(kc("get", "operation/index-repository", "-o", "jsonpath={.status.phase}/{.status.outcome.type}/{.status.outcome.reason}")).
		To(Equal("Cancelled/Cancelled/changed my mind"))
	kc("wait", "--for=condition=Ready", "operation/index-repository", "--timeout=30s")

	// Control requests are write-once.
	out, err := kubectlRun(ctx, ns, "patch", "operation/index-repository", "--type=merge", "-p", `{"spec":{"cancel":{"reason":"another"}}}`)
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring("spec.cancel is write-once"))

	// An illegal status write, by an agent (a person may not write status
	// at all), is refused, naming both phases.
	out, err = kubectlAs(ctx, agentKubeconf, ns, "patch", "operation/index-repository", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	g.Expect(err).To(HaveOccurred())
	g.Expect(out).To(ContainSubstring("invalid lifecycle transition: Cancelled -> Running"))

	// Abort a provisioning member through spec.abort.
	kc("wait", "--for=jsonpath={.status.phase}=Provisioning", "operation/member-alpha", "--timeout=60s")
	kc("patch", "operation/member-alpha", "--type=merge", "-p", `{"spec":{"abort":{"reason":"mob stopping"}}}`)
	kc("wait", "--for=condition=Terminal", "operation/member-alpha", "--timeout=60s")
	g.Expect(kc("get", "operation/member-alpha", "-o", "jsonpath={.status.outcome.type}/{.status.outcome.reason}")).
		To(Equal("Aborted/mob stopping"))
}

// TestKubectlRetireRunningOperation retires through spec.retire: the
// controller moves Running to Retiring and the agent finishes the retirement.
func TestKubectlRetireRunningOperation(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	manifest := `apiVersion: ops.meerkat.dev/v1alpha1
kind: OpsSession
metadata: {name: s}
---
apiVersion: ops.meerkat.dev/v1alpha1
kind: Operation
metadata: {name: worker}
spec: {sessionName: s, kind: MobMemberChild, displayName: worker}
`
	f := filepath.Join(t.TempDir(), "m.yaml")
	g.Expect(os.WriteFile(f, []byte(manifest), 0o600)).To(Succeed())
	out, err := kubectlRun(ctx, ns, "apply", "-f", f)
	g.Expect(err).NotTo(HaveOccurred(), out)
	out, err = kubectlRun(ctx, ns, "wait", "--for=jsonpath={.status.phase}=Provisioning", "operation/worker", "--timeout=60s")
	g.Expect(err).NotTo(HaveOccurred(), out)

	// The agent reports provisioning succeeded through the status subresource.
	patch := `{"status":{"phase":"Running","startedAt":"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"}}`
	out, err = kubectlAs(ctx, agentKubeconf, ns, "patch", "operation/worker", "--subresource=status", "--type=merge", "-p", patch)
	g.Expect(err).NotTo(HaveOccurred(), out)
	// The controller refreshes the conditions the raw patch did not touch.
	out, err = kubectlRun(ctx, ns, "wait", "--for=condition=Ready", "operation/worker", "--timeout=60s")
	g.Expect(err).NotTo(HaveOccurred(), out)

	out, err = kubectlRun(ctx, ns, "patch", "operation/worker", "--type=merge", "-p", `{"spec":{"retire":{}}}`)
	g.Expect(err).NotTo(HaveOccurred(), out)
	out, err = kubectlRun(ctx, ns, "wait", "--for=jsonpath={.status.phase}=Retiring", "operation/worker", "--timeout=60s")
	g.Expect(err).NotTo(HaveOccurred(), out)
}
