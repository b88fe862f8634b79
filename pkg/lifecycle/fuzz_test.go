package lifecycle_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// maxFuzzSteps bounds one sequence, so a long input does not make one slow run.
const maxFuzzSteps = 64

// fuzzBytes hands out the fuzz input one byte at a time, then zeros.
type fuzzBytes struct {
	data []byte
	i    int
}

func (b *fuzzBytes) next() byte {
	if b.i >= len(b.data) {
		b.i++
		return 0
	}
	v := b.data[b.i]
	b.i++
	return v
}

func (b *fuzzBytes) done() bool { return b.i >= len(b.data) }

// Header bytes: kind, initial phase, created-at annotation form.
// Step bytes: call, argument flags, signed clock step.
const (
	fuzzHeaderLen = 3
	fuzzStepLen   = 3
)

// fuzzSeed encodes a readable sequence of calls in the fuzz input format.
func fuzzSeed(mob bool, unsetPhase bool, annotation byte, calls ...lifecycle.Call) []byte {
	b := make([]byte, 0, fuzzHeaderLen+fuzzStepLen*len(calls))
	b = append(b, 0, 0, annotation)
	if mob {
		b[0] = 1
	}
	if unsetPhase {
		b[1] = 1
	}
	for i, c := range calls {
		idx := slices.Index(lifecycle.Calls, c)
		b = append(b, byte(idx), byte(0xff-i), byte(10+i))
	}
	return b
}

func fuzzSeeds() [][]byte {
	L := struct {
		PS, PF, AP, PR, RP, CO, FO, CA, RR, MR, TO, AD, RJ lifecycle.Call
	}{
		lifecycle.ProvisioningSucceeded, lifecycle.ProvisioningFailed, lifecycle.AbortProvisioning,
		lifecycle.PeerReady, lifecycle.ReportProgress, lifecycle.CompleteOperation, lifecycle.FailOperation,
		lifecycle.CancelOperation, lifecycle.RequestRetire, lifecycle.MarkRetired, lifecycle.TerminateOwner,
		lifecycle.Admit, lifecycle.Reject,
	}
	return [][]byte{
		{},
		fuzzSeed(false, false, 1, L.AD, L.PS, L.RP, L.RP, L.CO),
		fuzzSeed(true, true, 1, L.AD, L.PS, L.PR, L.PR, L.RP, L.RR, L.PR, L.MR, L.CO),
		fuzzSeed(true, false, 0, L.AD, L.PS, L.RR, L.PR, L.RP, L.CO, L.FO, L.TO),
		fuzzSeed(false, false, 2, L.CA, L.AD, L.CA),
		fuzzSeed(false, true, 3, L.TO, L.TO, L.RJ),
		fuzzSeed(false, false, 1, L.RJ, L.AD, L.CA, L.TO),
		fuzzSeed(true, false, 1, L.AD, L.PF, L.PS),
		fuzzSeed(false, false, 1, L.AD, L.AP, L.PS),
		fuzzSeed(true, false, 3, L.AD, L.PS, L.RR, L.RR, L.FO, L.MR),
		fuzzSeed(false, false, 0, L.AD, L.PS, L.MR, L.RP),
		fuzzSeed(true, true, 2, L.AD, L.TO, L.PR),
	}
}

func FuzzLifecycle(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runLifecycle(t, data)
	})
}

// TestLifecycleRandomSequences runs FuzzLifecycle's property over many
// pseudo-random inputs with a fixed seed, so plain `go test` exercises it.
func TestLifecycleRandomSequences(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for _, s := range fuzzSeeds() {
		runLifecycle(t, s)
	}
	rng := rand.New(rand.NewPCG(20260301, 42))
	buf := make([]byte, fuzzHeaderLen+fuzzStepLen*maxFuzzSteps)
	for i := 0; i < n && !t.Failed(); i++ {
		steps := 1 + rng.IntN(40)
		data := buf[:fuzzHeaderLen+fuzzStepLen*steps]
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		// Bias the call byte toward the calls that move an operation
		// forward, so many sequences get past Pending.
		for s := 0; s < steps; s++ {
			if rng.IntN(3) == 0 {
				forward := []lifecycle.Call{lifecycle.Admit, lifecycle.ProvisioningSucceeded, lifecycle.RequestRetire}
				data[fuzzHeaderLen+fuzzStepLen*s] = byte(slices.Index(lifecycle.Calls, forward[rng.IntN(len(forward))]))
			}
		}
		runLifecycle(t, data)
	}
}

// fuzzArgs decodes a call's arguments from one flags byte; each bit picks
// between the absent and a present value.
func fuzzArgs(flags byte, step int) lifecycle.Args {
	var a lifecycle.Args
	if flags&1 != 0 {
		a.Result = &opsv1.OperationResult{Content: "r", IsError: flags&2 != 0, DurationMs: int64(step), TokensUsed: int64(flags)}
	}
	if flags&2 != 0 {
		a.Error = "err"
	}
	switch (flags >> 2) & 3 {
	case 1:
		a.Reason = ptr("")
	case 2, 3:
		a.Reason = ptr("because")
	}
	if flags&16 != 0 {
		a.Peer = &opsv1.PeerHandle{PeerName: "p", TrustedPeer: opsv1.TrustedPeer{Name: "p", PeerID: "id", Address: "inproc://p"}}
	}
	if flags&32 != 0 {
		a.Message = "m"
	}
	if flags&64 != 0 {
		a.Percent = ptr(float64(flags) / 255)
	}
	if flags&128 != 0 {
		a.Rejection = &opsv1.Rejection{Reason: opsv1.RejectionOwnerTerminated}
	}
	return a
}

// runLifecycle decodes data into one operation and a sequence of calls, and
// checks the lifecycle's invariants after every call.
func runLifecycle(t *testing.T, data []byte) {
	t.Helper()
	src := &fuzzBytes{data: data}
	op, kind, created := fuzzOperation(src)

	now := created.Add(time.Second)
	progress := int64(0)
	var history []string
	for step := 0; step < maxFuzzSteps && !src.done(); step++ {
		c := lifecycle.Calls[int(src.next())%len(lifecycle.Calls)]
		args := fuzzArgs(src.next(), step)
		// Clocks of agents and the controller differ: time may step back.
		now = now.Add(time.Duration(int8(src.next())) * 7 * time.Millisecond)

		prev := op.DeepCopy()
		from := lifecycle.Normalize(prev.Status.Phase)
		err := lifecycle.Apply(op, c, args, now)
		history = append(history, string(from)+" "+c.String()+" ok")

		if err == nil && c == lifecycle.ReportProgress {
			progress++
		}
		if msg := checkCall(prev, op, c, kind, progress, err); msg != "" {
			history[len(history)-1] = string(from) + " " + c.String() + " err=" + errString(err)
			t.Fatalf("after %v:\n%s", history, msg)
		}
	}
	// Whatever happened, the operation must still satisfy them at the end.
	if msg := checkStatusInvariants(op, kind, progress); msg != "" {
		t.Fatalf("after %v: %s", history, msg)
	}
}

// fuzzOperation decodes the header bytes into the operation the calls are
// made on (its kind, initial phase and created-at annotation), as the
// controller first sees it, and returns it with its kind and creation time.
func fuzzOperation(src *fuzzBytes) (*opsv1.Operation, opsv1.OperationKind, time.Time) {
	kind := opsv1.BackgroundToolOp
	if src.next()%2 == 1 {
		kind = opsv1.MobMemberChild
	}
	phase := pending
	if src.next()%2 == 1 {
		phase = ""
	}
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	op := &opsv1.Operation{
		ObjectMeta: metav1.ObjectMeta{
			Name: "fuzz", Namespace: "ns", UID: "uid-fuzz", Generation: 1,
			CreationTimestamp: metav1.NewTime(created),
			Annotations:       map[string]string{},
		},
		Spec:   opsv1.OperationSpec{SessionName: testSession, Kind: kind},
		Status: opsv1.OperationStatus{Phase: phase},
	}
	switch ann := src.next(); ann % 4 {
	case 1: // the client's microsecond registration time
		op.Annotations[opsv1.AnnotationCreatedAt] = created.Add(time.Duration(ann) * 3 * time.Millisecond).Format(time.RFC3339Nano)
	case 2:
		op.Annotations[opsv1.AnnotationCreatedAt] = "garbage"
	case 3: // a client clock ahead of everyone else's
		op.Annotations[opsv1.AnnotationCreatedAt] = created.Add(time.Duration(ann) * time.Second).Format(time.RFC3339Nano)
	}
	// The controller sets conditions when it first sees the operation.
	lifecycle.SetConditions(op, created)
	return op, kind, created
}

// checkCall checks one call c that Apply made on prev, leaving op, or
// refused with err: Check on prev returns what Apply did, and then
// checkFailedCall or checkSuccessfulCall. progress is the number of
// successful report_progress calls so far. It returns what is wrong, or "".
func checkCall(prev, op *opsv1.Operation, c lifecycle.Call, kind opsv1.OperationKind, progress int64, err error) string {
	if checkErr := lifecycle.Check(prev, c); !reflect.DeepEqual(checkErr, err) {
		return fmt.Sprintf("Apply returned %v but Check returned %v", err, checkErr)
	}
	if err != nil {
		return checkFailedCall(prev, op, c, kind, err)
	}
	return checkSuccessfulCall(prev, op, c, kind, progress)
}

// checkFailedCall checks a call Apply refused with err: the operation is
// unchanged (op is prev), and err is of the type and has the fields the call
// and the phase it was made in explain. It returns what is wrong, or "".
func checkFailedCall(prev, op *opsv1.Operation, c lifecycle.Call, kind opsv1.OperationKind, err error) string {
	if !reflect.DeepEqual(prev, op) {
		return fmt.Sprintf("a failed Apply changed the operation:\n%s", cmp.Diff(prev, op))
	}
	from := lifecycle.Normalize(prev.Status.Phase)
	var it *lifecycle.InvalidTransitionError
	switch {
	case errors.As(err, &it):
		if !errors.Is(err, lifecycle.ErrInvalidTransition) || it.ID != "fuzz" || it.Status != from || it.Action != c.Action() {
			return fmt.Sprintf("bad InvalidTransitionError %+v", it)
		}
		if lifecycle.Allowed(c, from) {
			return "InvalidTransition for an allowed call"
		}
	case errors.Is(err, lifecycle.ErrPeerNotExpected):
		if c != lifecycle.PeerReady || kind == opsv1.MobMemberChild {
			return fmt.Sprintf("PeerNotExpected for %s on a %s", c, kind)
		}
	case errors.Is(err, lifecycle.ErrAlreadyPeerReady):
		if c != lifecycle.PeerReady || !prev.Status.PeerReady || kind != opsv1.MobMemberChild {
			return fmt.Sprintf("AlreadyPeerReady for %s (peerReady %v)", c, prev.Status.PeerReady)
		}
	default:
		return fmt.Sprintf("unexpected error type %T", err)
	}
	return ""
}

// checkSuccessfulCall checks a call Apply made, moving prev to op: the call
// was allowed and led where the table says, the outcome and the first times
// stay once set, and the new status holds the status invariants. It returns
// what is wrong, or "".
func checkSuccessfulCall(prev, op *opsv1.Operation, c lifecycle.Call, kind opsv1.OperationKind, progress int64) string {
	from := lifecycle.Normalize(prev.Status.Phase)
	to := lifecycle.Normalize(op.Status.Phase)
	switch {
	case !lifecycle.Allowed(c, from):
		return fmt.Sprintf("Apply succeeded with a call not allowed from %s", from)
	case to != lifecycle.Target(c, from):
		return fmt.Sprintf("phase %s, Target says %s", to, lifecycle.Target(c, from))
	case !lifecycle.PhaseChangeAllowed(from, to):
		return fmt.Sprintf("PhaseChangeAllowed(%s, %s) = false for a successful call", from, to)
	case lifecycle.IsFinal(from):
		return fmt.Sprintf("a final phase changed or accepted a call: %s -> %s", from, to)
	case prev.Status.Outcome != nil && !reflect.DeepEqual(prev.Status.Outcome, op.Status.Outcome):
		return fmt.Sprintf("outcome changed from %+v to %+v", prev.Status.Outcome, op.Status.Outcome)
	case prev.Status.StartedAt != nil && !reflect.DeepEqual(prev.Status.StartedAt, op.Status.StartedAt):
		return fmt.Sprintf("startedAt changed from %v to %v", prev.Status.StartedAt, op.Status.StartedAt)
	case prev.Status.CreatedAt != nil && !reflect.DeepEqual(prev.Status.CreatedAt, op.Status.CreatedAt):
		return fmt.Sprintf("createdAt changed from %v to %v", prev.Status.CreatedAt, op.Status.CreatedAt)
	}
	if msg := checkStatusInvariants(op, kind, progress); msg != "" {
		return fmt.Sprintf("%s\nstatus: %+v", msg, op.Status)
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// checkStatusInvariants checks what must hold of any status the lifecycle
// writes, and returns what is wrong, or "".
func checkStatusInvariants(op *opsv1.Operation, kind opsv1.OperationKind, progress int64) string {
	st := &op.Status
	phase := lifecycle.Normalize(st.Phase)
	if msg := checkTerminalFields(st, phase); msg != "" {
		return msg
	}
	if msg := checkPeerRejectionProgress(st, phase, kind, progress); msg != "" {
		return msg
	}
	if msg := checkTimes(st); msg != "" {
		return msg
	}
	if st.ObservedGeneration != op.Generation {
		return "observedGeneration not set"
	}
	terminal := findCondition(op, opsv1.ConditionTerminal)
	if terminal == nil || (terminal.Status == metav1.ConditionTrue) != lifecycle.IsFinal(phase) {
		return "Terminal condition does not match the phase"
	}
	return ""
}

// checkTerminalFields checks the fields a terminal phase sets: the outcome,
// its fields by its type, and completedAt.
func checkTerminalFields(st *opsv1.OperationStatus, phase opsv1.OperationPhase) string {
	o := st.Outcome
	switch {
	case lifecycle.IsTerminal(phase) != (o != nil):
		return "an outcome must be set exactly in a terminal phase"
	case o != nil && o.Type != phase:
		return "outcome.type differs from the phase"
	case o != nil && (o.Type == completed) != (o.Result != nil):
		return "outcome.result must be set exactly when Completed"
	case o != nil && o.Error != "" && o.Type != failed:
		return "outcome.error outside Failed"
	case o != nil && o.Reason != nil && o.Type != aborted && o.Type != cancelled && o.Type != terminated:
		return "outcome.reason outside Aborted, Cancelled, Terminated"
	case o != nil && o.Type == terminated && o.Reason == nil:
		return "Terminated without a reason"
	case lifecycle.IsTerminal(phase) != (st.CompletedAt != nil):
		return "completedAt must be set exactly in a terminal phase"
	}
	return ""
}

// checkPeerRejectionProgress checks the peer state by the kind, the
// rejection by the phase, and the progress count against the number of
// report_progress calls.
func checkPeerRejectionProgress(st *opsv1.OperationStatus, phase opsv1.OperationPhase, kind opsv1.OperationKind, progress int64) string {
	switch {
	case st.PeerReady && kind != opsv1.MobMemberChild:
		return "peerReady on an operation that is not a MobMemberChild"
	case st.PeerHandle != nil && !st.PeerReady:
		return "peerHandle without peerReady"
	case st.Rejection != nil && phase != rejected:
		return "rejection outside Rejected"
	case progress == 0 && st.Progress != nil, progress > 0 && (st.Progress == nil || st.Progress.Count != progress):
		return "progress count differs from the number of report_progress calls"
	}
	return ""
}

// checkTimes checks the order of the status times, and that elapsed times
// can be computed from createdAt.
func checkTimes(st *opsv1.OperationStatus) string {
	switch {
	case st.StartedAt != nil && st.CreatedAt != nil && st.StartedAt.Before(st.CreatedAt):
		return "startedAt before createdAt"
	case st.CompletedAt != nil && st.StartedAt != nil && st.CompletedAt.Before(st.StartedAt):
		return "completedAt before startedAt"
	case st.CompletedAt != nil && st.CreatedAt != nil && st.CompletedAt.Before(st.CreatedAt):
		return "completedAt before createdAt"
	case st.CompletedAt != nil && st.CreatedAt == nil:
		return "completedAt without createdAt: elapsed cannot be computed"
	case st.StartedAt != nil && st.CreatedAt == nil:
		return "startedAt without createdAt"
	}
	return ""
}
