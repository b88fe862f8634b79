package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdmissionPolicy says what a session does with an operation over its limit.
// +kubebuilder:validation:Enum=Reject;Queue
type AdmissionPolicy string

const (
	// AdmissionReject refuses an over-limit operation (phase Rejected), as Meerkat does.
	AdmissionReject AdmissionPolicy = "Reject"
	// AdmissionQueue keeps over-limit operations Pending and admits them in FIFO
	// order (creation time, then name) as slots free.
	AdmissionQueue AdmissionPolicy = "Queue"
)

// OpsSessionSpec holds a session's limits and its termination request.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.termination) || (has(self.termination) && self.termination == oldSelf.termination)",message="spec.termination is write-once: it cannot be changed or removed once set"
type OpsSessionSpec struct {
	// maxConcurrent caps the active (Provisioning, Running, Retiring)
	// operations. Unset means unlimited; 0 admits none.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`

	// maxCompleted is how many terminal operations are kept; the oldest
	// beyond it are deleted.
	// +optional
	// +kubebuilder:default=256
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	MaxCompleted *int32 `json:"maxCompleted,omitempty"`

	// admissionPolicy is Reject (default) or Queue.
	// +optional
	// +kubebuilder:default=Reject
	AdmissionPolicy AdmissionPolicy `json:"admissionPolicy,omitempty"`

	// termination terminates every non-terminal operation of the session
	// (terminate_owner). Write-once.
	// +optional
	Termination *Termination `json:"termination,omitempty"`

	// provisioningTimeout is the default for operations that set none.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('[0-9]') && self.matches('^[+]?(?:(?:[0-9]{1,6}(?:[.][0-9]*)?|[.][0-9]+)h)?(?:(?:[0-9]{1,7}(?:[.][0-9]*)?|[.][0-9]+)m)?(?:(?:[0-9]{1,9}(?:[.][0-9]*)?|[.][0-9]+)s)?(?:(?:[0-9]{1,12}(?:[.][0-9]*)?|[.][0-9]+)ms)?(?:(?:[0-9]{1,15}(?:[.][0-9]*)?|[.][0-9]+)(?:us|µs|μs))?(?:(?:[0-9]{1,18}(?:[.][0-9]*)?|[.][0-9]+)ns)?$') && duration(self) > duration('0s')",messageExpression="'spec.provisioningTimeout: ' + self + ' is not a positive duration such as 90s, 5m or 1h30m (units h, m, s, ms, us, ns, in that order, each at most once; below 1000000h)'"
	ProvisioningTimeout *metav1.Duration `json:"provisioningTimeout,omitempty"`

	// heartbeatTimeout is the default for operations that set none.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('[0-9]') && self.matches('^[+]?(?:(?:[0-9]{1,6}(?:[.][0-9]*)?|[.][0-9]+)h)?(?:(?:[0-9]{1,7}(?:[.][0-9]*)?|[.][0-9]+)m)?(?:(?:[0-9]{1,9}(?:[.][0-9]*)?|[.][0-9]+)s)?(?:(?:[0-9]{1,12}(?:[.][0-9]*)?|[.][0-9]+)ms)?(?:(?:[0-9]{1,15}(?:[.][0-9]*)?|[.][0-9]+)(?:us|µs|μs))?(?:(?:[0-9]{1,18}(?:[.][0-9]*)?|[.][0-9]+)ns)?$') && duration(self) > duration('0s')",messageExpression="'spec.heartbeatTimeout: ' + self + ' is not a positive duration such as 90s, 5m or 1h30m (units h, m, s, ms, us, ns, in that order, each at most once; below 1000000h)'"
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`

	// Malformed lists the problems decoding found in this spec, such as a
	// default timeout Go cannot parse (dropped, so treated as unset). Never serialised.
	Malformed []string `json:"-"`
}

// Termination is a terminate_owner request.
type Termination struct {
	// reason is recorded in every terminated operation's outcome.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// LedgerEntry is one admitted operation in the session's admission ledger.
type LedgerEntry struct {
	// name is the Operation's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
	// uid is the Operation's UID, so a re-registered name is a new entry.
	// +required
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
}

// OpsSessionStatus is written by the controller only.
type OpsSessionStatus struct {
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Ready, Reconciling, Stalled and Terminated.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// active counts Provisioning, Running and Retiring operations.
	// +optional
	Active int32 `json:"active,omitempty"`
	// queued counts Pending operations.
	// +optional
	Queued int32 `json:"queued,omitempty"`
	// retained counts terminal operations still kept.
	// +optional
	Retained int32 `json:"retained,omitempty"`

	// admitted is the admission ledger: every operation admitted under a
	// maxConcurrent limit and not yet seen terminal. It is written with
	// optimistic locking before any operation is marked admitted, so two
	// controllers, or one with a stale cache, cannot both take the last slot.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=10000
	Admitted []LedgerEntry `json:"admitted,omitempty"`
}

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

// OpsSession is one session's operation registry and its limits.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=opss;opsession,categories=meerkat
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.admissionPolicy`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxConcurrent`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.active`
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.queued`
// +kubebuilder:printcolumn:name="Retained",type=integer,JSONPath=`.status.retained`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Terminated",type=string,JSONPath=`.spec.termination.reason`,priority=1
type OpsSession struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the session's limits and its termination request.
	// +optional
	Spec OpsSessionSpec `json:"spec,omitempty"`
	// status is written by the controller only.
	// +optional
	Status OpsSessionStatus `json:"status,omitempty"`
}

// OpsSessionList is a list of OpsSessions.
//
// +kubebuilder:object:root=true
type OpsSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpsSession `json:"items"`
}
