package controllers

import (
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// digestReasons are the session's normal-flow events, each sent as a digest.
var digestReasons = []string{opsv1.EventReasonQueued, opsv1.EventReasonTerminated}

// digest gathers a session's normal-flow events between emissions.
type digest struct {
	mu      sync.Mutex
	pending map[string]*eventBatch // by session key + "/" + reason
}

type eventBatch struct {
	count  int
	names  []string // the first few, for the message
	detail string
}

const digestNames = 10

func (d *digest) add(key string, names []string, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = map[string]*eventBatch{}
	}
	b := d.pending[key]
	if b == nil {
		b = &eventBatch{}
		d.pending[key] = b
	}
	b.count += len(names)
	b.detail = detail
	for _, n := range names {
		if len(b.names) < digestNames {
			b.names = append(b.names, n)
		}
	}
}

func (d *digest) take(key string) *eventBatch {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.pending[key]
	delete(d.pending, key)
	return b
}

func (d *digest) has(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending[key] != nil
}

func (b *eventBatch) message(reason string) string {
	list := strings.Join(b.names, ", ")
	if b.count > len(b.names) {
		list += fmt.Sprintf(" and %d more", b.count-len(b.names))
	}
	return fmt.Sprintf("%s %d operation(s)%s: %s", strings.ToLower(reason), b.count, b.detail, list)
}

// emitDigests adds this pass's normal-flow operations to the session's
// digests and sends each digest whose interval has passed. It returns when
// the next one falls due, or 0 when none waits.
func (r *OpsSessionReconciler) emitDigests(sess *opsv1.OpsSession, batch map[string][]string, detail map[string]string, now time.Time) time.Duration {
	var next time.Duration
	for _, reason := range digestReasons {
		key := client.ObjectKeyFromObject(sess).String() + "/" + reason
		if names := batch[reason]; len(names) > 0 {
			r.digest.add(key, names, detail[reason])
		}
		if !r.digest.has(key) {
			continue
		}
		if wait := r.throttle.wait(key, r.CountsInterval, now); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		b := r.digest.take(key)
		r.throttle.mark(key, now)
		if r.Recorder != nil {
			r.Recorder.Eventf(sess, nil, corev1.EventTypeNormal, reason, reason, "%s", b.message(reason))
		}
	}
	return next
}
