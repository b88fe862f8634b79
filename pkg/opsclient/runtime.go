package opsclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// ErrSessionNotReady is returned for a session that is not registered.
var ErrSessionNotReady = errors.New("session not ready")

// SessionNotReadyError: the session is not registered (no OpsSession).
type SessionNotReadyError struct{ SessionID string }

func (e *SessionNotReadyError) Error() string {
	return fmt.Sprintf("session not ready: %s is not registered", e.SessionID)
}
func (e *SessionNotReadyError) Is(target error) bool { return target == ErrSessionNotReady }

// ErrOwnerTerminated is returned for a registration in a terminated session.
var ErrOwnerTerminated = errors.New("owner session terminated")

// OwnerTerminatedError: the session was terminated (terminate_owner), and a
// terminated session admits no new operation. Meerkat's registry accepts
// them; here the session is final, as its termination is write-once, so the
// registration is refused rather than left to run under a dead owner.
type OwnerTerminatedError struct{ SessionID, ID string }

func (e *OwnerTerminatedError) Error() string {
	return fmt.Sprintf("owner session terminated: %s was terminated, so operation %s was not registered", e.SessionID, e.ID)
}
func (e *OwnerTerminatedError) Is(target error) bool { return target == ErrOwnerTerminated }

// Runtime is one agent's handle on the operator, in one namespace.
type Runtime struct {
	c     client.WithWatch
	ns    string
	clock clock.PassiveClock
	// ctx bounds the shared session watches; Close ends them.
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	registries map[string]*Registry

	// progressInterval: see WithProgressInterval. timers runs its
	// intervals: the clock when it can, else the real one.
	progressInterval time.Duration
	timers           clock.WithDelayedExecution
	// intervalDone, when set (tests), is called once the work at the end
	// of an interval is done.
	intervalDone func()
}

// Scheme holds the kinds the client reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := opsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// New connects to the API server in cfg and works in namespace.
func New(cfg *rest.Config, namespace string, opts ...Option) (*Runtime, error) {
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	return NewFromClient(c, namespace, clock.RealClock{}, opts...), nil
}

// NewFromClient uses an existing client, which must know this package's
// Scheme. clk stamps the statuses; when it can also run timers (a
// clock.WithDelayedExecution such as k8s.io/utils/clock/testing's
// FakeClock), it runs the progress intervals too.
func NewFromClient(c client.WithWatch, namespace string, clk clock.PassiveClock, opts ...Option) *Runtime {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Runtime{c: c, ns: namespace, clock: clk, ctx: ctx, cancel: cancel, registries: map[string]*Registry{},
		progressInterval: DefaultProgressInterval, timers: clock.RealClock{}}
	if t, ok := clk.(clock.WithDelayedExecution); ok {
		rt.timers = t
	}
	for _, o := range opts {
		o(rt)
	}
	return rt
}

// Flush writes every registry's pending progress reports (see
// WithProgressInterval) and returns the first error.
func (rt *Runtime) Flush(ctx context.Context) error {
	rt.mu.Lock()
	regs := make([]*Registry, 0, len(rt.registries))
	for _, r := range rt.registries {
		regs = append(regs, r)
	}
	rt.mu.Unlock()
	var first error
	for _, r := range regs {
		if err := r.Flush(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close writes the pending progress reports (for up to 10 s), then stops
// the runtime's shared watches and timers. Pending waits then end with an
// error; the Runtime must not be used afterwards.
func (rt *Runtime) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	_ = rt.Flush(ctx)
	cancel()
	rt.cancel()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, r := range rt.registries {
		r.pmu.Lock()
		for id, b := range r.progress {
			r.dropLocked(id, b)
		}
		r.pmu.Unlock()
	}
}

// NewOperationID returns a fresh operation id, usable as an object name.
func NewOperationID() string { return string(uuid.NewUUID()) }

// NewSessionID returns a fresh session id, usable as an object name.
func NewSessionID() string { return string(uuid.NewUUID()) }

// RegisterSession creates the session's OpsSession. It is idempotent: an
// existing session is left as it is.
func (rt *Runtime) RegisterSession(ctx context.Context, id string, cfg SessionConfig) error {
	s := &opsv1.OpsSession{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: rt.ns},
		Spec: opsv1.OpsSessionSpec{
			MaxConcurrent: cfg.MaxConcurrent, MaxCompleted: cfg.MaxCompleted, AdmissionPolicy: cfg.AdmissionPolicy,
		},
	}
	if err := rt.c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// OpsLifecycleRegistry returns the session's registry, or SessionNotReady
// when the session is not registered. Each session has its own registry.
func (rt *Runtime) OpsLifecycleRegistry(ctx context.Context, sessionID string) (*Registry, error) {
	s := &opsv1.OpsSession{}
	if err := rt.c.Get(ctx, types.NamespacedName{Namespace: rt.ns, Name: sessionID}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &SessionNotReadyError{SessionID: sessionID}
		}
		return nil, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if r, ok := rt.registries[sessionID]; ok && r.sessionUID == s.UID {
		return r, nil
	}
	r := &Registry{rt: rt, session: sessionID, sessionUID: s.UID, watchers: map[string]int{}, known: map[string]*opsv1.Operation{},
		progress: map[string]*progressBuf{}}
	rt.registries[sessionID] = r
	// Start the session's shared watch now, in the background, so that the
	// first RegisterOperation or Wait does not also wait for it to list and
	// sync. It outlives ctx (see startWatch); the Runtime's Close stops it.
	r.startWatch(ctx)
	return r, nil
}

// InputOrigin, InputDurability and the header mirror Meerkat's runtime input.
type (
	InputOrigin     string
	InputDurability string
)

// InputVisibility says who may see an input.
type InputVisibility struct {
	TranscriptEligible bool
	OperatorEligible   bool
}

// InputHeader is a runtime input's header.
type InputHeader struct {
	ID              string
	Timestamp       metav1.Time
	Source          InputOrigin
	Durability      InputDurability
	Visibility      InputVisibility
	IdempotencyKey  *string
	SupersessionKey *string
	CorrelationID   *string
}

// OpEvent is a lifecycle event carried by an operation input.
type OpEvent struct {
	// Type is the event, such as Progress or Cancelled.
	Type    string
	Message string
	Percent *float64
}

// OperationInput is a lifecycle event for an operation, sent to a session.
type OperationInput struct {
	Header      InputHeader
	OperationID string
	Event       OpEvent
}

// AcceptOutcome is the answer to an input.
type AcceptOutcome struct{ accepted bool }

// IsAccepted reports whether the session accepted the input.
func (o AcceptOutcome) IsAccepted() bool { return o.accepted }

// CompletionHandle would wait for an input's completion. Lifecycle inputs
// are accepted without one, so AcceptInputWithCompletion returns nil.
type CompletionHandle struct{}

// AcceptInputWithCompletion accepts an operation input for a registered
// session and records it as a Kubernetes Event on the session. Lifecycle
// inputs are ignore-on-accept: no completion handle is allocated.
func (rt *Runtime) AcceptInputWithCompletion(ctx context.Context, sessionID string, in OperationInput) (AcceptOutcome, *CompletionHandle, error) {
	s := &opsv1.OpsSession{}
	if err := rt.c.Get(ctx, types.NamespacedName{Namespace: rt.ns, Name: sessionID}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return AcceptOutcome{}, nil, &SessionNotReadyError{SessionID: sessionID}
		}
		return AcceptOutcome{}, nil, err
	}
	now := rt.clock.Now()
	note := fmt.Sprintf("operation %s: %s", in.OperationID, in.Event.Type)
	if in.Event.Message != "" {
		note += ": " + in.Event.Message
	}
	if in.Event.Percent != nil {
		note += fmt.Sprintf(" (%.0f%%)", *in.Event.Percent*100)
	}
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", sessionID, now.UnixNano()),
			Namespace: rt.ns,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: "ops.meerkat.dev/opsclient",
		ReportingInstance:   "opsclient",
		Action:              "AcceptInput",
		Reason:              "OperationInput",
		Type:                corev1.EventTypeNormal,
		Note:                opsv1.Truncate(note, 1024),
		Regarding: corev1.ObjectReference{
			APIVersion: opsv1.GroupVersion.String(), Kind: "OpsSession",
			Namespace: rt.ns, Name: sessionID, UID: s.UID,
		},
	}
	if err := rt.c.Create(ctx, ev); err != nil {
		return AcceptOutcome{}, nil, fmt.Errorf("recording input %s: %w", in.Header.ID, err)
	}
	return AcceptOutcome{accepted: true}, nil, nil
}
