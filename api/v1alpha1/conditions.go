package v1alpha1

// This file is the one home of the names the controller writes besides
// phases and rejection reasons (which are enums of the types): condition
// types, condition reasons and event reasons, sectioned by the kind that
// carries them, as cluster-api documents each kind's conditions and reasons
// in one block. They are kept together here rather than beside each status
// type because Ready, Reconciling and Stalled are shared by both kinds.
// The messages that go with them are built once each: an Operation's in
// pkg/lifecycle (conditions.go, errors.go, control.go), an OpsSession's in
// pkg/admission (status.go) and controllers (the session's events).

// Condition types on both kinds. Ready, Reconciling and Stalled follow
// kstatus, so kubectl wait, Argo CD and Flux read health without custom code.
const (
	// ConditionReady is True while an Operation runs or once it ended as
	// asked (Completed, Retired, Cancelled, Aborted, Terminated); on an
	// OpsSession, once the controller has processed its latest spec.
	ConditionReady = "Ready"
	// ConditionReconciling is True while an Operation waits for admission or
	// provisioning (kstatus "in progress"), or while an OpsSession's
	// termination is being carried out. On an Operation it is present only
	// while True; kstatus reads it as False when absent.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when an Operation failed or was rejected, or
	// waits on a session that does not exist (kstatus "failed"). On an
	// Operation it is present only while True.
	ConditionStalled = "Stalled"
)

// Operation: condition types and reasons.
//
// An Operation carries Terminal and Ready, plus Reconciling and Stalled
// while True. Their reason is the phase name (OperationPhase), except on a
// Rejected operation, whose reason is its status.rejection.reason
// (RejectionReason), and the two below.
const (
	// ConditionTerminal is True once an Operation can no longer change: a
	// terminal outcome of any kind, or a rejection. Wait on it with
	// `kubectl wait --for=condition=Terminal`.
	ConditionTerminal = "Terminal"

	// ReasonSessionNotFound (Stalled): the Operation names an OpsSession
	// that does not exist.
	ReasonSessionNotFound = "SessionNotFound"
	// ReasonQueued (Reconciling): the Operation waits for a free slot in a
	// Queue-policy session.
	ReasonQueued = "Queued"
)

// Operation: deadline reasons. An operation failed by a deadline has a
// Failed outcome whose error starts with one of these, and gets an
// EventReasonTimedOut event.
const (
	// ReasonProvisioningTimeout: the Operation stayed Provisioning past provisioningTimeout.
	ReasonProvisioningTimeout = "ProvisioningTimeout"
	// ReasonHeartbeatTimeout: no agent status write within heartbeatTimeout.
	ReasonHeartbeatTimeout = "HeartbeatTimeout"
)

// OpsSession: condition types and reasons.
//
// An OpsSession carries Ready, Reconciling and Stalled, and Terminated once
// a termination was asked for.
const (
	// ConditionTerminated is True on an OpsSession whose termination was
	// carried out for every operation.
	ConditionTerminated = "Terminated"

	// ReasonReconciled (Ready, Reconciling, Stalled): the OpsSession's
	// status reflects its latest spec.
	ReasonReconciled = "Reconciled"
	// ReasonTerminationRequested (Terminated, Reconciling): terminate_owner
	// was asked for.
	ReasonTerminationRequested = "TerminationRequested"
)

// Operation: event reasons. Exceptions go on the operation itself, at once;
// the steady flow (admission, eviction) sends no event.
const (
	// EventReasonCancelled (Normal): spec.cancel was carried out.
	EventReasonCancelled = string(PhaseCancelled)
	// EventReasonAborted (Normal): spec.abort was carried out.
	EventReasonAborted = string(PhaseAborted)
	// EventReasonRetiring (Normal): spec.retire was carried out.
	EventReasonRetiring = string(PhaseRetiring)
	// EventReasonTimedOut (Warning): a deadline failed the operation; the
	// note is the outcome's error (ReasonProvisioningTimeout or
	// ReasonHeartbeatTimeout).
	EventReasonTimedOut = "TimedOut"
	// EventReasonRejected (Warning): the session refused the operation; the
	// note is the Stalled condition's message.
	EventReasonRejected = string(PhaseRejected)
	// EventReasonWriteRefused (Warning): the API server refused the
	// controller's write for a reason other than a conflict; the note is
	// its message.
	EventReasonWriteRefused = "WriteRefused"
	// EventReasonMalformedStatus (Warning): the status holds values the Go
	// types cannot decode (see decode.go); they are ignored.
	EventReasonMalformedStatus = "MalformedStatus"
)

// OpsSession: event reasons. Queued and Terminated are digests: one event
// per reason and session at most every counts interval, naming the
// operations.
const (
	// EventReasonQueued (Normal): operations of the session were queued.
	EventReasonQueued = ReasonQueued
	// EventReasonTerminated (Normal): operations of the session were
	// terminated, or (once) the session's termination was carried out.
	EventReasonTerminated = string(PhaseTerminated)
)

// Event reasons on both kinds.
const (
	// EventReasonMalformedSpec (Warning): the spec holds values the Go types
	// cannot decode (see decode.go): an unusable timeout is ignored (unset).
	EventReasonMalformedSpec = "MalformedSpec"
)

// Annotations and finalizers.
const (
	// AnnotationCreatedAt carries the registration time at microsecond
	// precision (RFC 3339), since metadata.creationTimestamp has only seconds.
	// The controller copies it to status.createdAt at admission.
	AnnotationCreatedAt = "ops.meerkat.dev/created-at"
	// AnnotationDeclared, set to "true", says the Operation is declared in
	// Git and kept there by a GitOps tool (Argo CD's tracking annotation and
	// Flux's label say so too): retention never evicts it, since the tool
	// would re-create it and the session would run it again.
	AnnotationDeclared = "ops.meerkat.dev/declared"
	// FinalizerTerminate makes deleting an OpsSession terminate its operations
	// first, so watchers get an outcome before owner references cascade.
	FinalizerTerminate = "ops.meerkat.dev/terminate-operations"
)
