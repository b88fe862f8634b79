package v1alpha1

// The names the controller writes besides phases and rejection reasons
// (which are enums of the types) have one home each, as cluster-api
// documents each kind's conditions and reasons in one block beside its
// status type: an Operation's condition types, reasons and event reasons
// follow OperationStatus (operation_types.go), an OpsSession's follow
// OpsSessionStatus (opssession_types.go), and this file holds what both
// kinds share: the kstatus condition types, MalformedSpec, and the
// annotations and finalizer. The messages that go with them are built once
// each: an Operation's in pkg/lifecycle (conditions.go, errors.go,
// control.go), an OpsSession's in pkg/admission (status.go) and controllers
// (the session's events).

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
