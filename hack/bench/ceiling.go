package main

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

const ceilingNamespace = "bench-ceiling"

// The ceiling's kinds of writes (CeilingResult.Kind; the lifecycle's gets
// its -lifecycle-ceiling-variant appended).
const (
	// ceilingSessions creates OpsSessions and patches their status.
	ceilingSessions = "OpsSession"
	// ceilingOperations creates Operations and patches their status.
	ceilingOperations = "Operation"
	// ceilingLifecycle sends one lifecycle's writes back to back.
	ceilingLifecycle = "Lifecycle"
)

// opsSessionKind is the OpsSession's kind, for owner references.
const opsSessionKind = "OpsSession"

// ceilingSession is the session the ceiling's Operations name (it does not
// exist: the manager is not running while they are written).
const ceilingSession = "ceiling"

// warmUpName names warmUpCRDs' objects.
const warmUpName = "warm-up"

// The -lifecycle-ceiling-variant values (see lifecycleWrites).
const (
	variantNoConditions    = "no-conditions"
	variantMinimalStatus   = "minimal-status"
	variantNoMessages      = "no-messages"
	variantTrueConditions  = "true-conditions"
	variantDerivedTimes    = "derived-times"
	variantLean            = "lean"
	variantNoManagedFields = "no-managed-fields"
	variantMergePatch      = "merge-patch"
	variantNoDelete        = "no-delete"
)

// CeilingResult is the API server's raw write rate for a trivial custom
// object at one client concurrency.
type CeilingResult struct {
	Kind           string  `json:"kind"`
	Concurrency    int     `json:"concurrency"`
	Writes         int64   `json:"writes"`
	Errors         int64   `json:"errors"`
	Seconds        float64 `json:"seconds"`
	WritesPerSec   float64 `json:"writesPerSec"`
	APIServerCores float64 `json:"apiserverCores"`
	EtcdCores      float64 `json:"etcdCores"`
	BenchCores     float64 `json:"benchCores"`
	// OtherCores is what the rest of the machine used meanwhile (other
	// people's processes): noise in the measurement.
	OtherCores float64 `json:"otherCores"`
}

// ceiling writes as fast as it can for cfg.duration with c goroutines:
// each creates an OpsSession (or an Operation) in the ceiling namespace,
// then merge-patches its status, again and again. Kind "Lifecycle" instead
// sends one lifecycle's writes back to back (see lifecycleWrites). The
// manager is not running, so nothing else writes. The objects are deleted
// afterwards.
func (b *bench) ceiling(ctx context.Context, c int, kind string) (CeilingResult, error) {
	if err := b.ensureNamespace(ctx, ceilingNamespace); err != nil {
		return CeilingResult{}, err
	}
	var writes, errs atomic.Int64
	api, etcd := childPID("kube-apiserver"), childPID("etcd")
	a0, e0, s0, m0 := readProc(api), readProc(etcd), readProc(selfPID), machineBusy()
	start := time.Now()
	deadline := start.Add(b.cfg.duration)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"active":1,"observedGeneration":1}}`))
	var wg sync.WaitGroup
	if kind == ceilingLifecycle && b.cfg.pprof && c == b.cfg.concurrency[len(b.cfg.concurrency)-1] {
		// The lifecycle-writes ceiling's own kube-apiserver profile: what
		// each of those writes costs, with nothing else running.
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.apiserverProfile(ctx, max(1, int(b.cfg.duration.Seconds())-1), "apiserver-lifecycle-ceiling-cpu.pprof")
		}()
	}
	for g := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				meta := metav1.ObjectMeta{Namespace: ceilingNamespace, Name: fmt.Sprintf("c%d-g%d-%d", c, g, i)}
				if kind == ceilingLifecycle {
					n, err := b.lifecycleWrites(ctx, meta)
					writes.Add(n)
					if err != nil {
						errs.Add(1)
					}
					continue
				}
				var s client.Object = &opsv1.OpsSession{ObjectMeta: meta}
				if kind != ceilingSessions {
					s = &opsv1.Operation{ObjectMeta: meta, Spec: opsv1.OperationSpec{SessionName: ceilingSession, Kind: opsv1.BackgroundToolOp}}
				}
				if err := b.ceil.Create(ctx, s); err != nil {
					errs.Add(1)
					continue
				}
				writes.Add(1)
				if err := b.ceil.Status().Patch(ctx, s, patch); err != nil {
					errs.Add(1)
					continue
				}
				writes.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	a1, e1, s1, m1 := readProc(api), readProc(etcd), readProc(selfPID), machineBusy()
	if err := ctx.Err(); err != nil {
		return CeilingResult{}, err
	}
	r := CeilingResult{
		Kind: kind, Concurrency: c, Writes: writes.Load(), Errors: errs.Load(), Seconds: round(el, 2),
		WritesPerSec:   round(float64(writes.Load())/el, 1),
		APIServerCores: round((a1.CPU-a0.CPU)/el, 2), EtcdCores: round((e1.CPU-e0.CPU)/el, 2),
		BenchCores: round((s1.CPU-s0.CPU)/el, 2),
		OtherCores: round(max(0, (m1-m0)-(a1.CPU-a0.CPU)-(e1.CPU-e0.CPU)-(s1.CPU-s0.CPU))/el, 2),
	}
	if kind != ceilingSessions {
		if err := b.admin.DeleteAllOf(ctx, &opsv1.Operation{}, client.InNamespace(ceilingNamespace)); err != nil {
			return r, err
		}
		return r, b.waitEmpty(ctx, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{
			APIVersion: opsv1.GroupVersion.String(), Kind: "OperationList"}}, ceilingNamespace, 0, 2*time.Minute)
	}
	return r, b.deleteSessions(ctx, ceilingNamespace)
}

// lifecycleWrites sends the writes of one lifecycle, as the agents and the
// manager would, with nothing in between: the object RegisterOperation
// creates, then status updates made by pkg/lifecycle (admit under the
// manager's field manager, provisioning succeeded, k progress reports,
// complete), then retention's delete. It returns how many writes succeeded.
// -lifecycle-ceiling-variant changes one thing at a time, to find what
// makes these writes cost more than the trivial ones: no-conditions,
// minimal-status, merge-patch, no-delete, and the content ablations
// no-messages, true-conditions, derived-times and lean (see leanStatus) and
// no-managed-fields (updates sent without metadata.managedFields). With
// -pprof, kube-apiserver's CPU profile of this ceiling at the largest C is
// saved as apiserver-lifecycle-ceiling-cpu.pprof.
func (b *bench) lifecycleWrites(ctx context.Context, meta metav1.ObjectMeta) (int64, error) {
	meta.Annotations = map[string]string{opsv1.AnnotationCreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	meta.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: opsv1.GroupVersion.String(), Kind: opsSessionKind, Name: ceilingSession,
		UID: "00000000-0000-0000-0000-00000000ce11", Controller: ptr.To(true),
	}}
	op := &opsv1.Operation{ObjectMeta: meta, Spec: opsv1.OperationSpec{
		SessionName: ceilingSession, Kind: opsv1.BackgroundToolOp, DisplayName: meta.Name}}
	if err := b.ceil.Create(ctx, op); err != nil {
		return 0, err
	}
	n := int64(1)
	k := b.cfg.progress
	type step struct {
		call  lifecycle.Call
		args  lifecycle.Args
		owner string // field manager, when not the agent's
	}
	steps := []step{{call: lifecycle.Admit, owner: "ops-operator-manager"}, {call: lifecycle.ProvisioningSucceeded}}
	for j := range k {
		p := float64(j+1) / float64(k+1)
		steps = append(steps, step{call: lifecycle.ReportProgress, args: lifecycle.Args{Message: fmt.Sprintf("step %d of %d", j+1, k), Percent: &p}})
	}
	steps = append(steps, step{call: lifecycle.CompleteOperation, args: lifecycle.Args{Result: &opsv1.OperationResult{Content: "done", DurationMs: 1}}})
	variant := b.cfg.lifecycleCeilingVariant
	for _, st := range steps {
		before := op.DeepCopy()
		if err := lifecycle.Apply(op, st.call, st.args, time.Now()); err != nil {
			return n, err
		}
		switch variant {
		case variantNoConditions:
			op.Status.Conditions = nil
		case variantMinimalStatus: // phase and outcome only: what the CEL rules need
			s := &op.Status
			s.Conditions, s.Progress, s.ObservedGeneration = nil, nil, 0
			s.CreatedAt, s.AdmittedAt, s.StartedAt, s.LastHeartbeatTime = nil, nil, nil, nil
		case variantNoMessages, variantTrueConditions, variantDerivedTimes, variantLean:
			leanStatus(op, before, st.call, variant)
		case variantNoManagedFields:
			// The update leaves metadata.managedFields out: the API server
			// keeps the stored ones, and decodes and coerces a smaller body.
			op.ManagedFields = nil
		}
		var err error
		if variant == variantMergePatch {
			patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
			err = b.ceil.Status().Patch(ctx, op, patch, client.FieldOwner(cmp.Or(st.owner, "ops-bench")))
		} else {
			err = b.ceil.Status().Update(ctx, op, client.FieldOwner(cmp.Or(st.owner, "ops-bench")))
		}
		if err != nil {
			return n, err
		}
		n++
	}
	if variant == variantNoDelete { // deleted after the measurement, with the rest
		return n, nil
	}
	if err := b.ceil.Delete(ctx, op, client.Preconditions{UID: &op.UID, ResourceVersion: &op.ResourceVersion}); err != nil {
		return n, err
	}
	return n + 1, nil
}

// deleteSessions deletes every OpsSession in ns and waits until they are gone.
func (b *bench) deleteSessions(ctx context.Context, ns string) error {
	if err := b.admin.DeleteAllOf(ctx, &opsv1.OpsSession{}, client.InNamespace(ns)); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return b.waitEmpty(ctx, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{
		APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSessionList"}}, ns, 0, 2*time.Minute)
}

// waitEmpty waits until a list in ns holds at most n objects.
func (b *bench) waitEmpty(ctx context.Context, list *metav1.PartialObjectMetadataList, ns string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := b.admin.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d %s left in %s after %s", len(list.Items), list.Kind, ns, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// warmUpCRDs takes the API server's first-write stall on each new CRD
// before anything is measured.
func (b *bench) warmUpCRDs(ctx context.Context) error {
	ns := "bench-warm-up"
	if err := b.ensureNamespace(ctx, ns); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: warmUpName}}
	if err := b.admin.Create(ctx, s); err != nil {
		return err
	}
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: warmUpName},
		Spec:       opsv1.OperationSpec{SessionName: warmUpName, Kind: opsv1.BackgroundToolOp},
	}
	if err := b.admin.Create(ctx, op); err != nil {
		return err
	}
	if err := b.admin.Delete(ctx, op); err != nil {
		return err
	}
	return b.admin.Delete(ctx, s)
}

// apiserverProfile saves a CPU profile of kube-apiserver (its /debug/pprof,
// as system:masters) taken over the next seconds, as file in the results
// folder.
func (b *bench) apiserverProfile(ctx context.Context, seconds int, file string) {
	hc, err := rest.HTTPClientFor(b.cl.cfg)
	if err != nil {
		logf("pprof: %v", err)
		return
	}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(b.cl.cfg.Host, "/"), seconds)
	saveProfile(ctx, hc, url, filepath.Join(b.resultsDir, file))
}

// leanStatus takes out of a status what the ablation variant leaves out:
// no-messages clears condition messages that only repeat the reason;
// true-conditions drops conditions whose status is False; derived-times
// leaves out createdAt (derivable from the registration) and keeps
// lastHeartbeatTime only from progress reports (admittedAt and startedAt
// say the rest); lean does all three.
func leanStatus(op, before *opsv1.Operation, call lifecycle.Call, variant string) {
	s := &op.Status
	if variant == variantNoMessages || variant == variantLean {
		for i, c := range s.Conditions {
			if c.Message == strings.ToLower(c.Reason) || c.Reason == "Provisioning" || c.Reason == "Pending" {
				s.Conditions[i].Message = ""
			}
		}
	}
	if variant == variantTrueConditions || variant == variantLean {
		kept := s.Conditions[:0]
		for _, c := range s.Conditions {
			if c.Status == metav1.ConditionTrue {
				kept = append(kept, c)
			}
		}
		s.Conditions = kept
	}
	if variant == variantDerivedTimes || variant == variantLean {
		s.CreatedAt = nil
		if call != lifecycle.ReportProgress {
			s.LastHeartbeatTime = before.Status.LastHeartbeatTime
		}
	}
}
