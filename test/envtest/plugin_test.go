package envtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/plugin"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// The kubectl plugin (internal/plugin, cmd/kubectl-meerkat), run in-process
// as a person with the editor role, as `kubectl meerkat ...` would run it.

type pluginResult struct {
	out, err string
	code     int
}

func (r pluginResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
}

// meerkat runs `kubectl meerkat args... -n ns --kubeconfig <editor>`.
func meerkat(ctx context.Context, ns string, args ...string) pluginResult {
	var out, errb bytes.Buffer
	args = append(args, "-n", ns, "--kubeconfig", kubeconf)
	code := plugin.Run(ctx, args, &out, &errb)
	return pluginResult{out: out.String(), err: errb.String(), code: code}
}

func pluginOp(ctx context.Context, ns, name string) func() *opsv1.Operation {
	return func() *opsv1.Operation {
		op := &opsv1.Operation{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, op); err != nil {
			return nil
		}
		return op
	}
}

func pluginPhase(ctx context.Context, ns, name string) func() opsv1.OperationPhase {
	return func() opsv1.OperationPhase {
		if op := pluginOp(ctx, ns, name)(); op != nil {
			return lifecycle.Normalize(op.Status.Phase)
		}
		return "<absent>"
	}
}

// pluginRegister registers an operation and moves it to phase (Provisioning,
// Running, Completed or Failed) as its agent would.
func pluginRegister(ctx context.Context, g Gomega, reg *opsclient.Registry, id, display string, phase opsv1.OperationPhase) {
	g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp, DisplayName: display})).To(Succeed())
	if phase == opsv1.PhaseProvisioning {
		return
	}
	g.Expect(reg.ProvisioningSucceeded(ctx, id)).To(Succeed())
	switch phase {
	case opsv1.PhaseCompleted:
		g.Expect(reg.CompleteOperation(ctx, id, opsv1.OperationResult{Content: "result of " + id})).To(Succeed())
	case opsv1.PhaseFailed:
		g.Expect(reg.FailOperation(ctx, id, "boom in "+id)).To(Succeed())
	}
}

// TestPluginGetTree: the session line with its counts, then the operations
// as a tree sorted by display name, then name; -o json and -o name.
func TestPluginGetTree(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](5)})
	ns, session := reg.Namespace(), reg.Session()

	pluginRegister(ctx, g, reg, "op-c", "gamma", opsv1.PhaseProvisioning)
	pluginRegister(ctx, g, reg, "op-a", "alpha", opsv1.PhaseRunning)
	g.Expect(reg.ReportProgress(ctx, "op-a", opsclient.ProgressUpdate{Message: "indexing files", Percent: ptr.To(0.5)})).To(Succeed())
	pluginRegister(ctx, g, reg, "op-d", "beta", opsv1.PhaseFailed)
	pluginRegister(ctx, g, reg, "op-b", "beta", opsv1.PhaseCompleted)
	pluginRegister(ctx, g, reg, "op-0", "", opsv1.PhaseProvisioning)

	// The counts are the controller's, in the session's status.
	var res pluginResult
	g.Eventually(func() string {
		res = meerkat(ctx, ns, "get", session)
		return res.out
	}).WithTimeout(30*time.Second).Should(ContainSubstring("active=3  queued=0  retained=2"), func() string { return res.String() })
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.err).To(BeEmpty())
	t.Logf("kubectl meerkat get %s:\n%s", session, res.out)

	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	g.Expect(lines).To(HaveLen(7), res.out)
	g.Expect(lines[0]).To(MatchRegexp(`^SESSION %s  policy=Reject  limit=5  active=3  queued=0  retained=2  age=\d+s$`, session))
	g.Expect(strings.Fields(lines[1])).To(Equal(strings.Fields("NAME  PHASE  AGE  PROGRESS  OUTCOME")))
	want := []string{
		`^├─ op-0 +Provisioning +\d+s +- +-$`,
		`^├─ alpha \(op-a\) +Running +\d+s +50% indexing files \(1\) +-$`,
		`^├─ beta \(op-b\) +Completed +\d+s +- +Completed: result of op-b$`,
		`^├─ beta \(op-d\) +Failed +\d+s +- +Failed: boom in op-d$`,
		`^└─ gamma \(op-c\) +Provisioning +\d+s +- +-$`,
	}
	for i, re := range want {
		g.Expect(lines[2+i]).To(MatchRegexp(re), res.out)
	}
	// Columns line up: every PHASE cell starts where the header's does.
	col := strings.Index(lines[1], "PHASE")
	for _, l := range lines[2:] {
		g.Expect(regexp.MustCompile(`^.{`+strconv.Itoa(col)+`}[A-Z]`).MatchString(l)).To(BeTrue(), "column of %q", l)
	}

	res = meerkat(ctx, ns, "get", session, "-o", "json")
	g.Expect(res.code).To(Equal(0), res.String())
	var list struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Items      []struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
			Status   struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	g.Expect(json.Unmarshal([]byte(res.out), &list)).To(Succeed(), res.out)
	g.Expect(list.APIVersion + "/" + list.Kind).To(Equal("v1/List"))
	got := make([]string, 0, len(list.Items))
	for _, it := range list.Items {
		got = append(got, it.Kind+"/"+it.Metadata.Name+"/"+it.Status.Phase)
	}
	g.Expect(got).To(Equal([]string{
		"OpsSession/" + session + "/",
		"Operation/op-0/Provisioning", "Operation/op-a/Running", "Operation/op-b/Completed",
		"Operation/op-d/Failed", "Operation/op-c/Provisioning",
	}))

	res = meerkat(ctx, ns, "get", session, "-o", "name")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("opssession.ops.meerkat.dev/" + session + "\n" +
		"operation.ops.meerkat.dev/op-0\noperation.ops.meerkat.dev/op-a\noperation.ops.meerkat.dev/op-b\n" +
		"operation.ops.meerkat.dev/op-d\noperation.ops.meerkat.dev/op-c\n"))

	res = meerkat(ctx, ns, "get", "no-such-session")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.out).To(BeEmpty())
	g.Expect(res.err).To(Equal(`error: session "no-such-session" not found in namespace "` + ns + `"` + "\n"))

	res = meerkat(ctx, ns, "get", session, "-o", "wide")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring(`unable to match a printer suitable for the output format "wide"`))
}

// TestPluginWait: exit 0 and the result only for Completed; 2 for other
// outcomes, Rejected included; 1 for errors and timeouts.
func TestPluginWait(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	rt, reg := newRegistry(t, opsclient.SessionConfig{})
	ns := reg.Namespace()

	pluginRegister(ctx, g, reg, "done", "done", opsv1.PhaseCompleted)
	res := meerkat(ctx, ns, "wait", "done")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("result of done\n"))
	g.Expect(res.err).To(BeEmpty())

	pluginRegister(ctx, g, reg, "broken", "broken", opsv1.PhaseFailed)
	res = meerkat(ctx, ns, "wait", "broken")
	g.Expect(res.code).To(Equal(2), res.String())
	g.Expect(res.out).To(BeEmpty())
	g.Expect(res.err).To(Equal("error: operation broken did not complete: Failed: boom in broken\n"))

	// -o json prints the final object; the exit code still follows the outcome.
	res = meerkat(ctx, ns, "wait", "broken", "-o", "json")
	g.Expect(res.code).To(Equal(2), res.String())
	var op opsv1.Operation
	g.Expect(json.Unmarshal([]byte(res.out), &op)).To(Succeed())
	g.Expect(op.Status.Outcome).To(Equal(&opsv1.TerminalOutcome{Type: opsv1.PhaseFailed, Error: "boom in broken"}))

	// A real wait: the watch sees the operation complete after the wait began.
	pluginRegister(ctx, g, reg, "slow", "slow", opsv1.PhaseRunning)
	errc := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		errc <- reg.CompleteOperation(ctx, "slow", opsv1.OperationResult{Content: "finally"})
	}()
	start := time.Now()
	res = meerkat(ctx, ns, "wait", "slow", "--timeout=60s")
	g.Expect(<-errc).To(Succeed())
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("finally\n"))
	g.Expect(time.Since(start)).To(BeNumerically(">=", time.Second))

	// Running, and still running at the timeout.
	pluginRegister(ctx, g, reg, "forever", "forever", opsv1.PhaseRunning)
	res = meerkat(ctx, ns, "wait", "forever", "--timeout=1s")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: timed out after 1s waiting for operation forever: it is still Running\n"))
	res = meerkat(ctx, ns, "wait", "forever", "--timeout=0")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring("forever is Running, not final yet"))

	// Rejected is final: a person's operation over a full Reject session.
	g.Expect(rt.RegisterSession(ctx, "full", opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](0)})).To(Succeed())
	g.Expect(k8s.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "refused", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: "full", Kind: opsv1.BackgroundToolOp}})).To(Succeed())
	res = meerkat(ctx, ns, "wait", "refused", "--timeout=60s")
	g.Expect(res.code).To(Equal(2), res.String())
	g.Expect(res.err).To(Equal("error: operation refused did not complete: Rejected: MaxConcurrentExceeded (limit 0, active 0)\n"))

	res = meerkat(ctx, ns, "wait", "nobody")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal(`error: operation "nobody" not found in namespace "` + ns + `"` + "\n"))
}

// TestPluginControlRequests: cancel, retire and abort are spec patches the
// controller carries out, refused here when the phase does not allow them.
func TestPluginControlRequests(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns := reg.Namespace()
	pluginRegister(ctx, g, reg, "prov", "prov", opsv1.PhaseProvisioning)
	pluginRegister(ctx, g, reg, "run", "run", opsv1.PhaseRunning)
	pluginRegister(ctx, g, reg, "fin", "fin", opsv1.PhaseCompleted)

	// The API server would accept spec.retire on a Provisioning operation,
	// and it would never happen: the plugin refuses it.
	res := meerkat(ctx, ns, "retire", "prov")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.out).To(BeEmpty())
	g.Expect(res.err).To(Equal("error: cannot retire operation prov: it is Provisioning, and retire is only allowed from Running (from Provisioning: cancel or abort)\n"))
	g.Expect(pluginOp(ctx, ns, "prov")().Spec.Retire).To(BeNil(), "nothing written")

	res = meerkat(ctx, ns, "abort", "run")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: cannot abort operation run: it is Running, and abort is only allowed from Provisioning (from Running: cancel or retire)\n"))
	g.Expect(pluginOp(ctx, ns, "run")().Spec.Abort).To(BeNil())

	res = meerkat(ctx, ns, "cancel", "fin", "--reason", "late")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: cannot cancel operation fin: it is already Completed, and a final operation does not change\n"))
	g.Expect(pluginOp(ctx, ns, "fin")().Spec.Cancel).To(BeNil())

	// Abort a Provisioning operation.
	res = meerkat(ctx, ns, "abort", "prov", "--reason", "mob stopping")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("operation.ops.meerkat.dev/prov abort requested\n"))
	g.Eventually(pluginPhase(ctx, ns, "prov")).WithTimeout(30 * time.Second).Should(Equal(opsv1.PhaseAborted))
	g.Expect(*pluginOp(ctx, ns, "prov")().Status.Outcome.Reason).To(Equal("mob stopping"))
	res = meerkat(ctx, ns, "cancel", "prov")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring("it is already Aborted"))

	// Retire a Running one; asking again is a no-op, asking otherwise is refused.
	res = meerkat(ctx, ns, "retire", "run")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("operation.ops.meerkat.dev/run retire requested\n"))
	g.Eventually(pluginPhase(ctx, ns, "run")).WithTimeout(30 * time.Second).Should(Equal(opsv1.PhaseRetiring))
	res = meerkat(ctx, ns, "retire", "run")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("operation.ops.meerkat.dev/run retire already requested (it is Retiring)\n"))
	res = meerkat(ctx, ns, "retire", "run", "--reason", "other")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: cannot retire operation run: it is Retiring, and retire is only allowed from Running (from Retiring: cancel)\n"))

	// Cancel the retiring one, with -o json showing the patched spec.
	res = meerkat(ctx, ns, "cancel", "run", "--reason", "changed my mind", "-o", "json")
	g.Expect(res.code).To(Equal(0), res.String())
	var op opsv1.Operation
	g.Expect(json.Unmarshal([]byte(res.out), &op)).To(Succeed(), res.out)
	g.Expect(op.Spec.Cancel).To(Equal(&opsv1.ControlRequest{Reason: ptr.To("changed my mind")}))
	g.Eventually(pluginPhase(ctx, ns, "run")).WithTimeout(30 * time.Second).Should(Equal(opsv1.PhaseCancelled))
	g.Expect(*pluginOp(ctx, ns, "run")().Status.Outcome.Reason).To(Equal("changed my mind"))

	res = meerkat(ctx, ns, "cancel", "nobody")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal(`error: operation "nobody" not found in namespace "` + ns + `"` + "\n"))
}

// TestPluginPendingOperation: a queued (Pending) operation can only be
// cancelled.
func TestPluginPendingOperation(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](1), AdmissionPolicy: opsv1.AdmissionQueue})
	ns, session := reg.Namespace(), reg.Session()
	pluginRegister(ctx, g, reg, "holder", "holder", opsv1.PhaseRunning)
	g.Expect(k8s.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "queued", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp}})).To(Succeed())
	g.Consistently(pluginPhase(ctx, ns, "queued"), 300*time.Millisecond).Should(Equal(opsv1.PhasePending))

	res := meerkat(ctx, ns, "abort", "queued")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: cannot abort operation queued: it is Pending, and abort is only allowed from Provisioning (from Pending: cancel)\n"))
	res = meerkat(ctx, ns, "retire", "queued")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring("it is Pending, and retire is only allowed from Running"))

	res = meerkat(ctx, ns, "cancel", "queued", "--reason", "not needed")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Eventually(pluginPhase(ctx, ns, "queued")).WithTimeout(30 * time.Second).Should(Equal(opsv1.PhaseCancelled))
	g.Expect(pluginPhase(ctx, ns, "holder")()).To(Equal(opsv1.PhaseRunning))
}

// TestPluginTerminate: --reason is required; terminating twice says so and exits 0.
func TestPluginTerminate(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()
	pluginRegister(ctx, g, reg, "one", "one", opsv1.PhaseRunning)
	pluginRegister(ctx, g, reg, "two", "two", opsv1.PhaseProvisioning)
	pluginRegister(ctx, g, reg, "three", "three", opsv1.PhaseCompleted)

	res := meerkat(ctx, ns, "terminate", session)
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(Equal("error: required flag(s) \"reason\" not set\n"))
	res = meerkat(ctx, ns, "terminate", session, "--reason", " ")
	g.Expect(res.code).To(Equal(1), res.String())

	res = meerkat(ctx, ns, "terminate", session, "--reason", "mob disbanded")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(res.out).To(Equal("opssession.ops.meerkat.dev/" + session + " termination requested\n"))
	for _, id := range []string{"one", "two"} {
		g.Eventually(pluginPhase(ctx, ns, id)).WithTimeout(30 * time.Second).Should(Equal(opsv1.PhaseTerminated))
		g.Expect(*pluginOp(ctx, ns, id)().Status.Outcome.Reason).To(Equal("mob disbanded"))
	}
	g.Expect(pluginPhase(ctx, ns, "three")()).To(Equal(opsv1.PhaseCompleted))

	g.Eventually(func() pluginResult {
		return meerkat(ctx, ns, "terminate", session, "--reason", "again")
	}).WithTimeout(30 * time.Second).Should(Equal(pluginResult{
		out: "opssession.ops.meerkat.dev/" + session + " already terminated (reason \"mob disbanded\")\n",
	}))
	res = meerkat(ctx, ns, "get", session)
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(strings.SplitN(res.out, "\n", 2)[0]).To(HaveSuffix(`terminated="mob disbanded"`))

	res = meerkat(ctx, ns, "terminate", "no-such-session", "--reason", "x")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring(`session "no-such-session" not found`))
}

// TestPluginCollect: finished operations are drained exactly once.
func TestPluginCollect(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()
	pluginRegister(ctx, g, reg, "ok", "fetch", opsv1.PhaseCompleted)
	pluginRegister(ctx, g, reg, "bad", "", opsv1.PhaseFailed)
	pluginRegister(ctx, g, reg, "busy", "busy", opsv1.PhaseRunning)

	res := meerkat(ctx, ns, "collect", session)
	g.Expect(res.code).To(Equal(0), res.String())
	t.Logf("kubectl meerkat collect %s:\n%s", session, res.out)
	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	g.Expect(lines).To(HaveLen(4), res.out)
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"COLLECTED", "DISPLAY", "OUTCOME"}))
	// Completion order: ok finished first.
	g.Expect(lines[1]).To(MatchRegexp(`^ok +fetch +Completed: result of ok$`))
	g.Expect(lines[2]).To(MatchRegexp(`^bad +- +Failed: boom in bad$`))
	g.Expect(lines[3]).To(Equal("2 operations collected from session " + session + "."))
	g.Expect(pluginOp(ctx, ns, "ok")()).To(BeNil())
	g.Expect(pluginOp(ctx, ns, "bad")()).To(BeNil())
	g.Expect(pluginPhase(ctx, ns, "busy")()).To(Equal(opsv1.PhaseRunning))

	res = meerkat(ctx, ns, "collect", session)
	g.Expect(res).To(Equal(pluginResult{out: "No finished operations to collect in session " + session + ".\n"}))

	g.Expect(reg.CompleteOperation(ctx, "busy", opsv1.OperationResult{Content: "at last"})).To(Succeed())
	res = meerkat(ctx, ns, "collect", session, "-o", "json")
	g.Expect(res.code).To(Equal(0), res.String())
	var list struct {
		Kind  string            `json:"kind"`
		Items []opsv1.Operation `json:"items"`
	}
	g.Expect(json.Unmarshal([]byte(res.out), &list)).To(Succeed(), res.out)
	g.Expect(list.Kind).To(Equal("List"))
	g.Expect(list.Items).To(HaveLen(1))
	g.Expect(list.Items[0].Name).To(Equal("busy"))
	g.Expect(list.Items[0].Status.Outcome.Result.Content).To(Equal("at last"))
	res = meerkat(ctx, ns, "collect", session, "-o", "json")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(json.Unmarshal([]byte(res.out), &list)).To(Succeed(), res.out)
	g.Expect(list.Items).To(BeEmpty())

	res = meerkat(ctx, ns, "collect", "no-such-session")
	g.Expect(res.code).To(Equal(1), res.String())
	g.Expect(res.err).To(ContainSubstring("session not ready"))
}

// TestPluginTop: one line per session with the controller's counts.
func TestPluginTop(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	rt, reg := newRegistry(t, opsclient.SessionConfig{MaxConcurrent: ptr.To[int32](2), AdmissionPolicy: opsv1.AdmissionQueue})
	ns, session := reg.Namespace(), reg.Session()
	g.Expect(rt.RegisterSession(ctx, "idle", opsclient.SessionConfig{})).To(Succeed())
	pluginRegister(ctx, g, reg, "a", "a", opsv1.PhaseRunning)
	pluginRegister(ctx, g, reg, "b", "b", opsv1.PhaseProvisioning)
	g.Expect(k8s.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: session, Kind: opsv1.BackgroundToolOp}})).To(Succeed())

	var res pluginResult
	row := regexp.MustCompile(`(?m)^` + session + ` +Queue +2 +2 +1 +0 +Ready +\d+s$`)
	g.Eventually(func() string {
		res = meerkat(ctx, ns, "top")
		return res.out
	}).WithTimeout(30*time.Second).Should(MatchRegexp(row.String()), func() string { return res.String() })
	t.Logf("kubectl meerkat top:\n%s", res.out)
	g.Expect(res.code).To(Equal(0))
	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	g.Expect(strings.Fields(lines[0])).To(Equal(strings.Fields("SESSION  POLICY  LIMIT  ACTIVE  QUEUED  RETAINED  STATE  AGE")))
	g.Expect(lines).To(HaveLen(3))
	// Sorted by name: a uuid session and "idle".
	idle := regexp.MustCompile(`^idle +Reject +unlimited +0 +0 +0 +Ready +\d+s$`)
	g.Expect(idle.MatchString(lines[1]) || idle.MatchString(lines[2])).To(BeTrue(), res.out)

	res = meerkat(ctx, ns, "top", "-A")
	g.Expect(res.code).To(Equal(0), res.String())
	g.Expect(strings.Fields(strings.SplitN(res.out, "\n", 2)[0])[0]).To(Equal("NAMESPACE"))
	g.Expect(res.out).To(MatchRegexp(`(?m)^` + ns + ` +` + session + ` +Queue +2 +2 +1 +0 +Ready`))
	g.Expect(res.out).To(MatchRegexp(`(?m)^` + ns + ` +idle +Reject`))

	res = meerkat(ctx, ns, "top", "-o", "yaml")
	g.Expect(res.code).To(Equal(0), res.String())
	var list opsv1.OpsSessionList
	g.Expect(yaml.Unmarshal([]byte(res.out), &list)).To(Succeed())
	g.Expect(list.Kind).To(Equal("OpsSessionList"))
	g.Expect(list.Items).To(HaveLen(2))

	empty := newNamespace(t)
	res = meerkat(ctx, empty, "top")
	g.Expect(res).To(Equal(pluginResult{err: "No sessions found in namespace " + empty + ".\n"}))
}

// TestPluginBinaryThroughKubectl builds cmd/kubectl-meerkat and lets the
// real kubectl find it on PATH, as a user runs it; exit codes pass through.
func TestPluginBinaryThroughKubectl(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "kubectl-meerkat"), "../../cmd/kubectl-meerkat")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()
	pluginRegister(ctx, g, reg, "good", "good", opsv1.PhaseCompleted)
	pluginRegister(ctx, g, reg, "bad", "bad", opsv1.PhaseFailed)

	run := func(args ...string) (string, string, int) {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"meerkat"}, append(args, "-n", ns, "--kubeconfig", kubeconf)...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("kubectl meerkat: %v", err)
		}
		return stdout.String(), stderr.String(), code
	}
	stdout, stderr, code := run("wait", "good")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(Equal("result of good\n"))
	stdout, stderr, code = run("wait", "bad")
	g.Expect(code).To(Equal(2))
	g.Expect(stdout).To(BeEmpty())
	g.Expect(stderr).To(Equal("error: operation bad did not complete: Failed: boom in bad\n"))
	stdout, stderr, code = run("get", session)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stdout).To(ContainSubstring("└─ good (good)"))
	_, stderr, code = run("retire", "bad")
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(Equal("error: cannot retire operation bad: it is already Failed, and a final operation does not change\n"))
}

// TestPluginKrewManifest: the krew-style manifest names the binary and has
// an artifact per platform.
func TestPluginKrewManifest(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile("../../plugins/krew/meerkat.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Caveats          string `json:"caveats"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Files  []struct {
					From string `json:"from"`
					To   string `json:"to"`
				} `json:"files"`
				Bin string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	g.Expect(yaml.UnmarshalStrict(b, &m)).To(Succeed())
	g.Expect(m.APIVersion).To(Equal("krew.googlecontainertools.github.com/v1alpha2"))
	g.Expect(m.Kind).To(Equal("Plugin"))
	g.Expect(m.Metadata.Name).To(Equal("meerkat"))
	g.Expect(m.Spec.Version).To(MatchRegexp(`^v\d+\.\d+\.\d+$`))
	g.Expect(m.Spec.ShortDescription).NotTo(BeEmpty())
	for _, cmd := range []string{"get SESSION", "wait OP", "cancel|retire|abort", "terminate SESSION", "collect SESSION", "top"} {
		g.Expect(m.Spec.Description).To(ContainSubstring(cmd))
	}
	platforms := make([]string, 0, len(m.Spec.Platforms))
	for _, p := range m.Spec.Platforms {
		goos, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		platforms = append(platforms, goos+"/"+arch)
		bin := "kubectl-meerkat"
		if goos == "windows" {
			bin += ".exe"
		}
		g.Expect(p.Bin).To(Equal(bin))
		g.Expect(p.Files).To(ContainElement(HaveField("From", bin)), "the archive's binary is installed")
		g.Expect(p.URI).To(HaveSuffix("/" + m.Spec.Version + "/kubectl-meerkat_" + m.Spec.Version + "_" + goos + "_" + arch + ".tar.gz"))
		g.Expect(p.SHA256).To(MatchRegexp(`^[0-9a-f]{64}$`))
	}
	g.Expect(platforms).To(ConsistOf("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64"))
}
