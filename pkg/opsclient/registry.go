package opsclient

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// Registry is one session's operation registry.
type Registry struct {
	rt         *Runtime
	session    string
	sessionUID types.UID

	mu       sync.Mutex
	watchers map[string]int // pending watchers per operation, this process only
	// known holds the object as this registry last wrote or saw it, so a
	// call can write without reading first; a stale one costs a conflict
	// and a read, never a wrong write (the write carries its resourceVersion).
	known map[string]*opsv1.Operation

	watchOnce sync.Once
	watch     *sessionWatch // see startWatch

	// pmu guards progress: each operation's progress reports not yet
	// written (WithProgressInterval).
	pmu      sync.Mutex
	progress map[string]*progressBuf
}

// maxKnown bounds the known-object cache; past it, it starts over.
const maxKnown = 8192

func (r *Registry) remember(op *opsv1.Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known == nil || len(r.known) >= maxKnown {
		r.known = map[string]*opsv1.Operation{}
	}
	if lifecycle.IsFinal(op.Status.Phase) {
		delete(r.known, op.Name)
		return
	}
	r.known[op.Name] = op.DeepCopy()
}

func (r *Registry) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.known, id)
}

func (r *Registry) recall(id string) *opsv1.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op, ok := r.known[id]; ok {
		return op.DeepCopy()
	}
	return nil
}

// Session is the registry's session id.
func (r *Registry) Session() string { return r.session }

// Namespace is the registry's namespace.
func (r *Registry) Namespace() string { return r.rt.ns }
