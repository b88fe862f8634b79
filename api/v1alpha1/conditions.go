package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow kstatus, so kubectl
// wait, Argo CD and Flux read health without custom code.
const (
	// ConditionTerminal is True once an Operation can no longer change: a
	// terminal outcome of any kind, or a rejection. Wait on it with
	// `kubectl wait --for=condition=Terminal`.
	ConditionTerminal = "Terminal"
	// ConditionReady is True while an Operation runs or once it ended as
	// asked (Completed, Retired, Cancelled, Aborted, Terminated); on an
	// OpsSession, once the controller has processed its latest spec.
	ConditionReady = "Ready"
	// ConditionReconciling is True while an Operation waits for admission or
	// provisioning (kstatus "in progress"). On an Operation it is present
	// only while True; kstatus reads it as False when absent.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when an Operation failed or was rejected, or
	// waits on a session that does not exist (kstatus "failed"). On an
	// Operation it is present only while True.
	ConditionStalled = "Stalled"
	// ConditionTerminated is True on an OpsSession whose termination was
	// carried out for every operation.
	ConditionTerminated = "Terminated"
)

// Condition reasons that are not phase names. Where a reason describes a
// phase, the phase name itself is the reason.
const (
	// ReasonSessionNotFound: the Operation names an OpsSession that does not exist.
	ReasonSessionNotFound = "SessionNotFound"
	// ReasonQueued: the Operation waits for a free slot in a Queue-policy session.
	ReasonQueued = "Queued"
	// ReasonReconciled: the OpsSession's status reflects its latest spec.
	ReasonReconciled = "Reconciled"
	// ReasonTerminationRequested: terminate_owner was asked for.
	ReasonTerminationRequested = "TerminationRequested"
	// ReasonProvisioningTimeout: the Operation stayed Provisioning past provisioningTimeout.
	ReasonProvisioningTimeout = "ProvisioningTimeout"
	// ReasonHeartbeatTimeout: no agent status write within heartbeatTimeout.
	ReasonHeartbeatTimeout = "HeartbeatTimeout"
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
