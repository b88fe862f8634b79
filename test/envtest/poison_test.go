package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/opsclient"
)

// The duration fields of both kinds' specs.
const (
	provisioningTimeout = "provisioningTimeout"
	heartbeatTimeout    = "heartbeatTimeout"
)

// badDuration is a duration time.ParseDuration refuses.
const badDuration = "abc"

// Values the CRD once admitted but the Go types cannot decode: a timeout
// time.ParseDuration refuses or that is not positive, and a timestamp
// metav1.MicroTime refuses (it wants exactly six fractional digits).
var (
	poisonDurations = []string{badDuration, "5 minutes", "9999999999h", "-5s", "0s", "", "0.5ns", "1h1x"}
	poisonTimes     = []string{"2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123Z",
		"2024-01-01t00:00:00.000000z", "2023-02-29T00:00:00.000000Z", "2024-01-01T00:00:00.000000ZTx"}
	timeoutFields = []string{provisioningTimeout, heartbeatTimeout}
	timeFields    = []string{"createdAt", "admittedAt", "startedAt", "completedAt", "lastHeartbeatTime"}
)

// noSession is the session of operations no session admits: none exists.
const noSession = "none"

// The manager's events on an object holding poison.
const (
	reasonMalformedSpec   = "MalformedSpec"
	reasonMalformedStatus = "MalformedStatus"
)

// newUnstructured is an object of kind with spec, as raw JSON has it.
func newUnstructured(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(opsv1.GroupVersion.String())
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// unstructuredOp is a BackgroundToolOp of session, its spec's other fields
// (or these two) set from spec.
func unstructuredOp(ns, name, session string, spec map[string]any) *unstructured.Unstructured {
	full := map[string]any{"sessionName": session, "kind": string(opsv1.BackgroundToolOp)}
	maps.Copy(full, spec)
	return newUnstructured(kindOperation, ns, name, full)
}

func unstructuredSession(ns, name string, spec map[string]any) *unstructured.Unstructured {
	return newUnstructured(kindOpsSession, ns, name, spec)
}

// patchStatus merge-patches status through the status subresource, as raw
// JSON into an unstructured object, so no Go type decodes the answer.
func patchStatus(ctx context.Context, c client.Client, ns, name string, status map[string]any) error {
	u := unstructuredOp(ns, name, "", nil)
	body, _ := json.Marshal(map[string]any{"status": status})
	return c.Status().Patch(ctx, u, client.RawPatch(types.MergePatchType, body))
}

// TestPoisonValuesAreRefused: the API server refuses every duration and
// timestamp the Go types cannot decode, naming the field, and accepts what
// the Go types write.
func TestPoisonValuesAreRefused(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	type tc struct {
		name  string
		write func() error
		field string
	}
	var cases []tc
	n := 0
	for _, field := range timeoutFields {
		for _, v := range poisonDurations {
			n++
			name := fmt.Sprintf("p%d", n)
			cases = append(cases,
				tc{name: fmt.Sprintf("Operation spec.%s %q", field, v), field: "spec." + field, write: func() error {
					return admin.Create(ctx, unstructuredOp(ns, name, "s", map[string]any{field: v}))
				}},
				tc{name: fmt.Sprintf("OpsSession spec.%s %q", field, v), field: "spec." + field, write: func() error {
					return admin.Create(ctx, unstructuredSession(ns, name, map[string]any{field: v}))
				}})
		}
	}
	target := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: "target", Namespace: ns},
		Spec: opsv1.OperationSpec{SessionName: noSession, Kind: opsv1.BackgroundToolOp}}
	if err := admin.Create(ctx, target); err != nil {
		t.Fatal(err)
	}
	for _, field := range timeFields {
		for _, v := range poisonTimes {
			cases = append(cases, tc{name: fmt.Sprintf("status.%s %q", field, v), field: "status." + field, write: func() error {
				return patchStatus(ctx, admin, ns, "target", map[string]any{field: v})
			}})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.write()
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("the message does not name %s: %v", c.field, err)
			}
		})
	}

	// What the Go types write is accepted.
	t.Run("Go-written values", func(t *testing.T) {
		for i, d := range []time.Duration{time.Nanosecond, 1500 * time.Nanosecond, 250 * time.Millisecond, 90 * time.Second, 36*time.Hour + time.Second/3, 999999 * time.Hour} {
			op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ok%d", i), Namespace: ns},
				Spec: opsv1.OperationSpec{SessionName: noSession, Kind: opsv1.BackgroundToolOp,
					ProvisioningTimeout: &metav1.Duration{Duration: d}, HeartbeatTimeout: &metav1.Duration{Duration: d}}}
			if err := admin.Create(ctx, op, client.DryRunAll); err != nil {
				t.Errorf("%s: %v", d, err)
			}
			sess := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ok%d", i), Namespace: ns},
				Spec: opsv1.OpsSessionSpec{ProvisioningTimeout: &metav1.Duration{Duration: d}, HeartbeatTimeout: &metav1.Duration{Duration: d}}}
			if err := admin.Create(ctx, sess, client.DryRunAll); err != nil {
				t.Errorf("session %s: %v", d, err)
			}
		}
		for i, tm := range []time.Time{time.Now(), time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.FixedZone("", -9*3600)), time.Unix(0, 0)} {
			raw, _ := metav1.NewMicroTime(tm).MarshalJSON()
			var s string
			_ = json.Unmarshal(raw, &s)
			status := map[string]any{}
			for _, f := range timeFields {
				status[f] = s
			}
			// A fresh operation each: completedAt is write-once.
			name := fmt.Sprintf("times%d", i)
			if err := admin.Create(ctx, &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: opsv1.OperationSpec{SessionName: noSession, Kind: opsv1.BackgroundToolOp}}); err != nil {
				t.Fatal(err)
			}
			if err := patchStatus(ctx, admin, ns, name, status); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
}

// crdSchemaProps returns the properties map at path in a CRD's first version.
func crdSchemaProps(crd *unstructured.Unstructured, path ...string) map[string]any {
	// Not NestedSlice: it returns a copy, and callers edit the schema in place.
	versions := crd.Object["spec"].(map[string]any)["versions"].([]any)
	schema := versions[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
	for _, p := range path {
		schema = schema["properties"].(map[string]any)[p].(map[string]any)
	}
	return schema["properties"].(map[string]any)
}

// relaxCRD replaces a CRD's schema with the one before the poison values
// were refused (the fields' new validations stripped), until the returned
// restore runs; t.Cleanup restores it too, so a failure never leaves the CRD
// relaxed.
func relaxCRD(t *testing.T, ctx context.Context, name string, strip func(*unstructured.Unstructured)) (restore func()) {
	t.Helper()
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := admin.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	original := runtime.DeepCopyJSONValue(crd.Object["spec"])
	relaxed := crd.DeepCopy()
	strip(relaxed)
	if err := admin.Update(ctx, relaxed); err != nil {
		t.Fatalf("relaxing %s: %v", name, err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := crd.DeepCopy()
			if err := admin.Get(rctx, client.ObjectKey{Name: name}, cur); err != nil {
				return err
			}
			cur.Object["spec"] = runtime.DeepCopyJSONValue(original)
			return admin.Update(rctx, cur)
		})
		if err != nil {
			t.Errorf("restoring %s: %v", name, err)
			return
		}
		done = true
	}
	t.Cleanup(restore)
	return restore
}

func stripOperationsCRD(crd *unstructured.Unstructured) {
	spec := crdSchemaProps(crd, "spec")
	for _, f := range timeoutFields {
		p := spec[f].(map[string]any)
		delete(p, "x-kubernetes-validations")
		delete(p, "maxLength")
	}
	status := crdSchemaProps(crd, "status")
	for _, f := range timeFields {
		delete(status[f].(map[string]any), "pattern")
	}
}

func stripSessionsCRD(crd *unstructured.Unstructured) {
	spec := crdSchemaProps(crd, "spec")
	for _, f := range timeoutFields {
		p := spec[f].(map[string]any)
		delete(p, "x-kubernetes-validations")
		delete(p, "maxLength")
	}
}

// schemaAccepts says whether the API server now accepts the poison
// duration badDuration on an Operation and on an OpsSession (dry run).
func schemaAccepts(ctx context.Context, ns string) (op, sess bool) {
	poison := specValue(heartbeatTimeout, badDuration)
	errOp := admin.Create(ctx, unstructuredOp(ns, "probe", "s", poison), client.DryRunAll)
	errSess := admin.Create(ctx, unstructuredSession(ns, "probe", poison), client.DryRunAll)
	return errOp == nil, errSess == nil
}

func warnings(ctx context.Context, ns, name, reason string) func() []eventsv1.Event {
	return func() []eventsv1.Event {
		var list eventsv1.EventList
		if err := admin.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil
		}
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason && e.Type == "Warning" {
				out = append(out, e)
			}
		}
		return out
	}
}

// TestPoisonObjectsDoNotHaltTheManager: objects stored before the schema
// refused their values (here: with the CRDs briefly relaxed to that older
// schema) neither stop the manager admitting for everyone else nor stop
// pkg/opsclient reading their namespace; the manager reports each once.
func TestPoisonObjectsDoNotHaltTheManager(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	_, reg := newRegistry(t, opsclient.SessionConfig{})
	ns, session := reg.Namespace(), reg.Session()

	// Two good operations, admitted before any poison exists; "tainted"
	// gets poison timestamps in its status below.
	good, tainted := "good-"+opsclient.NewOperationID(), "tainted-"+opsclient.NewOperationID()
	for _, id := range []string{good, tainted} {
		g.Expect(reg.RegisterOperation(ctx, opsclient.OperationSpec{ID: id, Kind: opsv1.BackgroundToolOp, DisplayName: id})).To(Succeed())
	}

	// Relax both CRDs and wait until the API server really serves the old schema.
	restoreOps := relaxCRD(t, ctx, "operations.ops.meerkat.dev", stripOperationsCRD)
	restoreSessions := relaxCRD(t, ctx, "opssessions.ops.meerkat.dev", stripSessionsCRD)
	g.Eventually(func() bool { op, sess := schemaAccepts(ctx, ns); return op && sess }).
		WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(BeTrue(), "the relaxed schema never took effect")

	// The poison, in the registry's own session and namespace.
	const poisonOpName, poisonSessionName = "poison-spec", "poison-session"
	poisonSpec := unstructuredOp(ns, poisonOpName, session, map[string]any{heartbeatTimeout: badDuration, provisioningTimeout: "9999999999h"})
	poisonSession := unstructuredSession(ns, poisonSessionName, map[string]any{provisioningTimeout: "5 minutes", heartbeatTimeout: "-5s"})
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = client.IgnoreNotFound(admin.Delete(cctx, poisonSpec))
		_ = client.IgnoreNotFound(admin.Delete(cctx, poisonSession))
	})
	g.Expect(admin.Create(ctx, poisonSpec)).To(Succeed())
	g.Expect(admin.Create(ctx, poisonSession)).To(Succeed())
	g.Expect(patchStatus(ctx, admin, ns, tainted, map[string]any{
		"startedAt": "2024-01-01T00:00:00Z", "createdAt": "2024-01-01T00:00:00.123456789Z",
	})).To(Succeed())

	// Back to the real schema; wait until the API server refuses poison again.
	restoreOps()
	restoreSessions()
	g.Eventually(func() bool { op, sess := schemaAccepts(ctx, ns); return op || sess }).
		WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(BeFalse(), "the restored schema never took effect")

	// The poison is stored: read it raw.
	raw := unstructuredOp(ns, poisonOpName, "", nil)
	g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(raw), raw)).To(Succeed())
	stored, _, _ := unstructured.NestedString(raw.Object, "spec", heartbeatTimeout)
	g.Expect(stored).To(Equal(badDuration))

	// A canary in another namespace and session is admitted within 5 s.
	_, canary := newRegistry(t, opsclient.SessionConfig{})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	g.Expect(canary.RegisterOperation(cctx, opsclient.OperationSpec{ID: opsclient.NewOperationID(), Kind: opsv1.BackgroundToolOp})).
		To(Succeed(), "the canary was not admitted within 5 s")
	t.Logf("canary admitted in %v", time.Since(start).Round(time.Millisecond))

	// The manager reported each poison object once, naming field and value.
	for _, w := range []struct{ name, reason, want string }{
		{poisonOpName, reasonMalformedSpec, `spec.heartbeatTimeout: "abc": invalid duration`},
		{poisonOpName, reasonMalformedSpec, `spec.provisioningTimeout: "9999999999h": invalid duration`},
		{tainted, reasonMalformedStatus, `status.startedAt: "2024-01-01T00:00:00Z"`},
		{tainted, reasonMalformedStatus, `status.createdAt: "2024-01-01T00:00:00.123456789Z"`},
		{poisonSessionName, reasonMalformedSpec, `spec.provisioningTimeout: "5 minutes": invalid duration`},
		{poisonSessionName, reasonMalformedSpec, `spec.heartbeatTimeout: "-5s": not a positive duration`},
	} {
		g.Eventually(warnings(ctx, ns, w.name, w.reason)).WithTimeout(10*time.Second).
			Should(ContainElement(HaveField("Note", ContainSubstring(w.want))), "no %s event on %s saying %s", w.reason, w.name, w.want)
	}

	// pkg/opsclient reads the namespace that holds the poison: the running
	// registry, whose session watch re-listed when the CRD changed, and a
	// new runtime whose first list meets the poison.
	snap, err := reg.Snapshot(ctx, good)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snap.Status).To(Equal(opsv1.PhaseProvisioning))
	list, err := reg.ListOperations(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list).To(ContainElements(HaveField("ID", good), HaveField("ID", poisonOpName), HaveField("ID", tainted)))
	fresh := opsclient.NewFromClient(agent, ns, clock.RealClock{})
	t.Cleanup(fresh.Close)
	freshReg, err := fresh.OpsLifecycleRegistry(ctx, session)
	g.Expect(err).NotTo(HaveOccurred())
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	w1, err := reg.RegisterWatcher(wctx, good)
	g.Expect(err).NotTo(HaveOccurred())
	w2, err := freshReg.RegisterWatcher(wctx, good)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reg.ProvisioningSucceeded(ctx, good)).To(Succeed())
	g.Expect(reg.CompleteOperation(ctx, good, opsv1.OperationResult{Content: "done"})).To(Succeed())
	for _, w := range []*opsclient.Watcher{w1, w2} {
		out, err := w.Wait(wctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out.Type).To(Equal(opsv1.PhaseCompleted))
	}

	// Once, not in a loop: a moment later each is still a single event,
	// never repeated (a repeat would be counted in its series).
	time.Sleep(time.Second)
	for _, name := range []string{poisonOpName, poisonSessionName} {
		evs := warnings(ctx, ns, name, reasonMalformedSpec)()
		g.Expect(evs).To(HaveLen(1), "MalformedSpec events on %s", name)
		g.Expect(evs[0].Series).To(BeNil(), "the MalformedSpec event on %s was repeated", name)
	}

	g.Expect(admin.Delete(ctx, poisonSpec)).To(Succeed())
	g.Expect(admin.Delete(ctx, poisonSession)).To(Succeed())
}
