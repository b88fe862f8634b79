package reliability

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/controllers"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// staleClient reads a session as it was at some earlier moment and hides
// some operations, as a lagging informer would; its writes are real.
type staleClient struct {
	client.Client
	session *opsv1.OpsSession
	hide    map[string]bool
}

func (s *staleClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if sess, ok := obj.(*opsv1.OpsSession); ok && key == client.ObjectKeyFromObject(s.session) {
		s.session.DeepCopyInto(sess)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

func (s *staleClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := s.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if ops, ok := list.(*opsv1.OperationList); ok {
		kept := ops.Items[:0]
		for _, op := range ops.Items {
			if !s.hide[op.Name] {
				kept = append(kept, op)
			}
		}
		ops.Items = kept
	}
	return nil
}

// TestStaleCacheCannotOverAdmit drives the OpsSession reconciler directly:
// once with a true view, admitting A into the only slot, then with a stale
// view that misses A's admission. The stale pass must fail on the ledger's
// optimistic lock instead of admitting X.
func TestStaleCacheCannotOverAdmit(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	sess := &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Name: "one-slot", Namespace: ns, Finalizers: []string{opsv1.FinalizerTerminate}},
		Spec:       opsv1.OpsSessionSpec{MaxConcurrent: ptr.To[int32](1), AdmissionPolicy: opsv1.AdmissionQueue},
	}
	g.Expect(k8s.Create(ctx, sess)).To(Succeed())
	newOp := func(name string) *opsv1.Operation {
		op := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: opsv1.OperationSpec{SessionName: sess.Name, Kind: opsv1.BackgroundToolOp}}
		g.Expect(k8s.Create(ctx, op)).To(Succeed())
		return op
	}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sess)}
	reconciler := func(c client.Client) *controllers.OpsSessionReconciler {
		return &controllers.OpsSessionReconciler{Client: c, APIReader: controllerIdentity, Clock: clock.RealClock{}}
	}

	stale := sess.DeepCopy() // the session before A was admitted
	newOp("a")
	_, err := reconciler(controllerIdentity).Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	x := newOp("x")

	res, err := reconciler(&staleClient{Client: controllerIdentity, session: stale, hide: map[string]bool{"a": true}}).Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(BeNumerically(">", 0), "a lost optimistic lock is retried")

	var list opsv1.OperationList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	active := 0
	for _, op := range list.Items {
		if lifecycle.IsActive(op.Status.Phase) {
			active++
		}
	}
	g.Expect(active).To(Equal(1), "the stale pass over-admitted")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(x), x)).To(Succeed())
	g.Expect(lifecycle.Normalize(x.Status.Phase)).To(Equal(opsv1.PhasePending))

	// With a true view again, X waits in the queue until A finishes.
	_, err = reconciler(controllerIdentity).Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(x), x)).To(Succeed())
	g.Expect(lifecycle.Normalize(x.Status.Phase)).To(Equal(opsv1.PhasePending))
}
