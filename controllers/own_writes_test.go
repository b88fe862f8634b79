package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

func opAt(rv string, phase opsv1.OperationPhase) *opsv1.Operation {
	return &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "uid-a", ResourceVersion: rv},
		Status:     opsv1.OperationStatus{Phase: phase},
	}
}

func TestOwnWritesView(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var o ownWrites
	stale := opAt("1", opsv1.PhasePending)
	if got, ok := o.view(stale, t0); !ok || got != stale {
		t.Fatalf("no write recorded: view = %v, %v; want the cached object", got, ok)
	}

	written := opAt("2", opsv1.PhaseProvisioning)
	o.record(stale.UID, "1", written, t0)
	if got, ok := o.view(stale, t0); !ok || got != written {
		t.Fatalf("cache behind our write: view = %v, %v; want the written object", got, ok)
	}
	caughtUp := opAt("2", opsv1.PhaseProvisioning)
	if got, ok := o.view(caughtUp, t0); !ok || got != caughtUp {
		t.Fatalf("cache caught up: view = %v, %v; want the cached object", got, ok)
	}
	if got, _ := o.view(stale, t0); got != stale {
		t.Fatalf("entry should be gone once the cache caught up")
	}

	o.record(written.UID, "2", nil, t0)
	if _, ok := o.view(caughtUp, t0); ok {
		t.Fatalf("deleted by us, cache behind: view should report it gone")
	}
	if got, ok := o.view(caughtUp, t0.Add(ownWriteTTL+time.Second)); !ok || got != caughtUp {
		t.Fatalf("after the TTL the cached object is current again: view = %v, %v", got, ok)
	}

	var none *ownWrites
	none.record("uid-b", "1", nil, t0) // a nil receiver records nothing, and does not panic
}
