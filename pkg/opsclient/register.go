package opsclient

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// RegisterOperation creates the operation and waits for the session's
// admission decision. A rejection is returned as MaxConcurrentExceeded with
// the limit and active count, and the refused object is removed. An id still
// retained, even as terminal, gives AlreadyRegistered; an evicted id may
// register again. Under a Queue-policy session it waits for a slot until ctx
// ends, and then withdraws the operation.
func (r *Registry) RegisterOperation(ctx context.Context, spec OperationSpec) error {
	now := r.rt.clock.Now()
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: spec.ID, Namespace: r.rt.ns,
			Annotations: map[string]string{opsv1.AnnotationCreatedAt: now.UTC().Format(time.RFC3339Nano)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSession",
				Name: r.session, UID: r.sessionUID, Controller: ptr.To(true),
			}},
		},
		Spec: opsv1.OperationSpec{
			SessionName: r.session, Kind: spec.Kind, DisplayName: spec.DisplayName,
			SourceLabel: spec.SourceLabel, ChildSessionID: spec.ChildSessionID,
			ExpectPeerChannel: spec.ExpectPeerChannel,
		},
	}
	if spec.ProvisioningTimeout > 0 {
		op.Spec.ProvisioningTimeout = &metav1.Duration{Duration: spec.ProvisioningTimeout}
	}
	if spec.HeartbeatTimeout > 0 {
		op.Spec.HeartbeatTimeout = &metav1.Duration{Duration: spec.HeartbeatTimeout}
	}
	if err := r.rt.c.Create(ctx, op); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return &lifecycle.AlreadyRegisteredError{ID: spec.ID}
		}
		return err
	}
	decided, err := r.waitFor(ctx, op.Name, op.UID, func(o *opsv1.Operation) bool {
		return lifecycle.Normalize(o.Status.Phase) != opsv1.PhasePending
	})
	if err != nil {
		if ctx.Err() != nil {
			r.withdraw(op)
		}
		return err
	}
	if decided.Status.Phase != opsv1.PhaseRejected {
		r.remember(decided)
		return nil
	}
	r.withdraw(decided)
	rej := decided.Status.Rejection
	if rej != nil && rej.Reason == opsv1.RejectionMaxConcurrentExceeded && rej.Limit != nil && rej.Active != nil {
		return &lifecycle.MaxConcurrentExceededError{Limit: int(*rej.Limit), Active: int(*rej.Active)}
	}
	return &OwnerTerminatedError{SessionID: r.session, ID: spec.ID}
}

// withdraw deletes an operation this registry created and no longer wants.
func (r *Registry) withdraw(op *opsv1.Operation) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.rt.c.Delete(ctx, op, client.Preconditions{UID: &op.UID})
}
