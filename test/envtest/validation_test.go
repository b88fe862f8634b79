package envtest

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// TestInvalidObjectsAreRefused: bad input is refused by the API server with
// a message naming the field, and nothing is stored.
func TestInvalidObjectsAreRefused(t *testing.T) {
	g, ctx := NewWithT(t), testContext(t)
	ns := newNamespace(t)
	op := func(mutate func(*opsv1.Operation)) *opsv1.Operation {
		o := &opsv1.Operation{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: ns},
			Spec: opsv1.OperationSpec{SessionName: "s", Kind: opsv1.BackgroundToolOp}}
		mutate(o)
		return o
	}
	cases := map[string]struct {
		obj   client.Object
		field string
	}{
		"negative maxConcurrent": {
			obj:   &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "neg", Namespace: ns}, Spec: opsv1.OpsSessionSpec{MaxConcurrent: ptr.To[int32](-1)}},
			field: "spec.maxConcurrent",
		},
		"negative maxCompleted": {
			obj:   &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "neg2", Namespace: ns}, Spec: opsv1.OpsSessionSpec{MaxCompleted: ptr.To[int32](-5)}},
			field: "spec.maxCompleted",
		},
		"unknown admission policy": {
			obj:   &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: "pol", Namespace: ns}, Spec: opsv1.OpsSessionSpec{AdmissionPolicy: "Maybe"}},
			field: "spec.admissionPolicy",
		},
		"unknown kind":                 {obj: op(func(o *opsv1.Operation) { o.Spec.Kind = "CronJob" }), field: "spec.kind"},
		"10,000-character displayName": {obj: op(func(o *opsv1.Operation) { o.Spec.DisplayName = strings.Repeat("x", 10000) }), field: "spec.displayName"},
		"missing sessionName":          {obj: op(func(o *opsv1.Operation) { o.Spec.SessionName = "" }), field: "spec.sessionName"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			err := k8s.Create(ctx, tc.obj)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.field))
		})
	}

	// Percent 1.5 in a status write.
	good := op(func(o *opsv1.Operation) {})
	g.Expect(k8s.Create(ctx, good)).To(Succeed())
	// Merge patches without a resourceVersion: the controller may write
	// this operation's conditions at any moment.
	err := agent.Status().Patch(ctx, good, client.RawPatch(types.MergePatchType, []byte(`{"status":{"progress":{"percent":1.5}}}`)))
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("status.progress.percent"))

	// Immutable identity.
	err = k8s.Patch(ctx, good, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"sessionName":"other"}}`)))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.sessionName is immutable"))

	var list opsv1.OperationList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1), "only the valid operation is stored")
}
