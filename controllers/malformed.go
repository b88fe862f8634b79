package controllers

import (
	"context"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// Objects holding values the Go types cannot decode (see
// api/v1alpha1/decode.go): the manager ignores those values (an unusable
// timeout is unset; a timestamp in another RFC 3339 form is read anyway)
// and says so once, in its log and in a Warning event on the object
// (opsv1.EventReasonMalformedSpec, EventReasonMalformedStatus).

// reported remembers, per object and reason, the problems already reported,
// so a problem is logged and sent once however often the object is
// reconciled, and again only if it changes. It is per process: a restarted
// manager reports each malformed object once more. Entries of deleted
// objects stay; there are as many as malformed objects, which are few.
var reported malformedReports

type malformedReports struct {
	mu   sync.Mutex
	seen map[types.UID]map[string]string
}

// first records problems for (uid, reason) and says whether they are new.
// No problems forgets the entry, so a value broken again is reported again.
func (m *malformedReports) first(uid types.UID, reason string, problems []string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(problems) == 0 {
		if byReason := m.seen[uid]; byReason != nil {
			delete(byReason, reason)
			if len(byReason) == 0 {
				delete(m.seen, uid)
			}
		}
		return false
	}
	if m.seen == nil {
		m.seen = map[types.UID]map[string]string{}
	}
	if m.seen[uid] == nil {
		m.seen[uid] = map[string]string{}
	}
	key := strings.Join(problems, "\n")
	if m.seen[uid][reason] == key {
		return false
	}
	m.seen[uid][reason] = key
	return true
}

// reportMalformed logs problems and sends them as one Warning event on obj,
// the first time they are seen for obj and reason. It never asks for a
// requeue: nothing the manager does fixes the value, a user's write does,
// and that write queues the object again.
func reportMalformed(ctx context.Context, rec recorder.EventRecorder, kind string, obj client.Object, reason string, problems []string) {
	if !reported.first(obj.GetUID(), reason, problems) {
		return
	}
	log.FromContext(ctx).Info("ignoring values the operator cannot decode; fix or remove them",
		"kind", kind, "object", client.ObjectKeyFromObject(obj), "reason", reason, "problems", problems)
	if rec != nil {
		rec.Eventf(obj, nil, corev1.EventTypeWarning, reason, reason, "%s", malformedNote(problems))
	}
}

// malformedNote is the event message, within maxNote; each problem quotes
// at most 64 characters of its value.
func malformedNote(problems []string) string {
	return opsv1.Truncate("ignored: "+strings.Join(problems, "; "), maxNote)
}

// reportMalformedOperation reports an Operation's undecodable spec and status values.
func reportMalformedOperation(ctx context.Context, rec recorder.EventRecorder, op *opsv1.Operation) {
	reportMalformed(ctx, rec, "Operation", op, opsv1.EventReasonMalformedSpec, op.Spec.Malformed)
	reportMalformed(ctx, rec, "Operation", op, opsv1.EventReasonMalformedStatus, op.Status.Malformed)
}

// reportMalformedSession reports an OpsSession's undecodable spec values
// (its default timeouts). The session reconciler calls it on every pass.
func reportMalformedSession(ctx context.Context, rec recorder.EventRecorder, sess *opsv1.OpsSession) {
	reportMalformed(ctx, rec, "OpsSession", sess, opsv1.EventReasonMalformedSpec, sess.Spec.Malformed)
}

// malformedOperation passes the events of operations with undecodable
// values, so that even a finished one, which the operation controller
// otherwise leaves alone, is reported.
func malformedOperation() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		op, ok := o.(*opsv1.Operation)
		return ok && (len(op.Spec.Malformed) > 0 || len(op.Status.Malformed) > 0)
	})
}
