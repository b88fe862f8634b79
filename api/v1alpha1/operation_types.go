package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OperationKind says what an operation runs.
// +kubebuilder:validation:Enum=BackgroundToolOp;MobMemberChild
type OperationKind string

const (
	// BackgroundToolOp is a background tool job.
	BackgroundToolOp OperationKind = "BackgroundToolOp"
	// MobMemberChild is a child member of an agent mob; only it may report peer-ready.
	MobMemberChild OperationKind = "MobMemberChild"
)

// OperationPhase is where an operation is in its lifecycle.
// +kubebuilder:validation:Enum=Pending;Provisioning;Running;Retiring;Completed;Failed;Aborted;Cancelled;Retired;Terminated;Rejected
type OperationPhase string

const (
	// PhasePending means the session has not admitted the operation yet. An
	// operation with no phase at all is Pending too.
	PhasePending OperationPhase = "Pending"
	// PhaseProvisioning means admitted; the agent is starting it.
	PhaseProvisioning OperationPhase = "Provisioning"
	// PhaseRunning means provisioning succeeded.
	PhaseRunning OperationPhase = "Running"
	// PhaseRetiring means a retire was requested and the operation is winding down.
	PhaseRetiring OperationPhase = "Retiring"
	// PhaseCompleted is terminal: the operation finished with a result.
	PhaseCompleted OperationPhase = "Completed"
	// PhaseFailed is terminal: the operation failed with an error.
	PhaseFailed OperationPhase = "Failed"
	// PhaseAborted is terminal: provisioning was aborted.
	PhaseAborted OperationPhase = "Aborted"
	// PhaseCancelled is terminal: the operation was cancelled.
	PhaseCancelled OperationPhase = "Cancelled"
	// PhaseRetired is terminal: the operation retired.
	PhaseRetired OperationPhase = "Retired"
	// PhaseTerminated is terminal: its owning session was terminated.
	PhaseTerminated OperationPhase = "Terminated"
	// PhaseRejected is final but not a lifecycle state: a Reject-policy session
	// refused to admit the operation. It carries no outcome.
	PhaseRejected OperationPhase = "Rejected"
)

// OperationSpec is what an agent or a user declares about an operation.
// Identity fields are immutable; control requests are write-once (rules on
// Operation, since removing one is allowed once the operation is final).
//
// Every rule on an Operation runs on every write, status writes included,
// and each field access on an object costs the API server an allocation
// per property of that object: so the identity fields share one rule.
//
// +kubebuilder:validation:XValidation:rule="(has(self.displayName) ? has(oldSelf.displayName) && self.displayName == oldSelf.displayName : !has(oldSelf.displayName)) && (has(self.sourceLabel) ? has(oldSelf.sourceLabel) && self.sourceLabel == oldSelf.sourceLabel : !has(oldSelf.sourceLabel)) && (has(self.childSessionID) ? has(oldSelf.childSessionID) && self.childSessionID == oldSelf.childSessionID : !has(oldSelf.childSessionID)) && (has(self.expectPeerChannel) ? has(oldSelf.expectPeerChannel) && self.expectPeerChannel == oldSelf.expectPeerChannel : !has(oldSelf.expectPeerChannel))",messageExpression="'spec.' + (!(has(self.displayName) ? has(oldSelf.displayName) && self.displayName == oldSelf.displayName : !has(oldSelf.displayName)) ? 'displayName' : !(has(self.sourceLabel) ? has(oldSelf.sourceLabel) && self.sourceLabel == oldSelf.sourceLabel : !has(oldSelf.sourceLabel)) ? 'sourceLabel' : !(has(self.childSessionID) ? has(oldSelf.childSessionID) && self.childSessionID == oldSelf.childSessionID : !has(oldSelf.childSessionID)) ? 'childSessionID' : 'expectPeerChannel') + ' is immutable'"
type OperationSpec struct {
	// sessionName is the OpsSession, in the same namespace, that owns this operation.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.sessionName is immutable"
	SessionName string `json:"sessionName,omitempty"`

	// kind is BackgroundToolOp or MobMemberChild.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.kind is immutable"
	Kind OperationKind `json:"kind,omitempty"`

	// displayName is the human-readable name; ListOperations sorts by it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	DisplayName string `json:"displayName,omitempty"`

	// sourceLabel says which component started the operation.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	SourceLabel string `json:"sourceLabel,omitempty"`

	// childSessionID is the session a MobMemberChild runs.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ChildSessionID string `json:"childSessionID,omitempty"`

	// expectPeerChannel says the operation will report peer-ready.
	// +optional
	ExpectPeerChannel bool `json:"expectPeerChannel,omitempty"`

	// cancel asks the controller to cancel the operation. Write-once.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.cancel is write-once: it cannot be changed, nor removed before the operation is final"
	Cancel *ControlRequest `json:"cancel,omitempty"`

	// retire asks the controller to move a Running operation to Retiring. Write-once.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.retire is write-once: it cannot be changed, nor removed before the operation is final"
	Retire *ControlRequest `json:"retire,omitempty"`

	// abort asks the controller to abort a Provisioning operation. Write-once.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.abort is write-once: it cannot be changed, nor removed before the operation is final"
	Abort *ControlRequest `json:"abort,omitempty"`

	// provisioningTimeout fails the operation if it is still Provisioning this
	// long after admission. Overrides the session's default.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('[0-9]') && self.matches('^[+]?(?:(?:[0-9]{1,6}(?:[.][0-9]*)?|[.][0-9]+)h)?(?:(?:[0-9]{1,7}(?:[.][0-9]*)?|[.][0-9]+)m)?(?:(?:[0-9]{1,9}(?:[.][0-9]*)?|[.][0-9]+)s)?(?:(?:[0-9]{1,12}(?:[.][0-9]*)?|[.][0-9]+)ms)?(?:(?:[0-9]{1,15}(?:[.][0-9]*)?|[.][0-9]+)(?:us|µs|μs))?(?:(?:[0-9]{1,18}(?:[.][0-9]*)?|[.][0-9]+)ns)?$') && duration(self) > duration('0s')",messageExpression="'spec.provisioningTimeout: ' + self + ' is not a positive duration such as 90s, 5m or 1h30m (units h, m, s, ms, us, ns, in that order, each at most once; below 1000000h)'"
	ProvisioningTimeout *metav1.Duration `json:"provisioningTimeout,omitempty"`

	// heartbeatTimeout fails a Running or Retiring operation when no agent
	// status write arrives for this long. Overrides the session's default.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('[0-9]') && self.matches('^[+]?(?:(?:[0-9]{1,6}(?:[.][0-9]*)?|[.][0-9]+)h)?(?:(?:[0-9]{1,7}(?:[.][0-9]*)?|[.][0-9]+)m)?(?:(?:[0-9]{1,9}(?:[.][0-9]*)?|[.][0-9]+)s)?(?:(?:[0-9]{1,12}(?:[.][0-9]*)?|[.][0-9]+)ms)?(?:(?:[0-9]{1,15}(?:[.][0-9]*)?|[.][0-9]+)(?:us|µs|μs))?(?:(?:[0-9]{1,18}(?:[.][0-9]*)?|[.][0-9]+)ns)?$') && duration(self) > duration('0s')",messageExpression="'spec.heartbeatTimeout: ' + self + ' is not a positive duration such as 90s, 5m or 1h30m (units h, m, s, ms, us, ns, in that order, each at most once; below 1000000h)'"
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`

	// Malformed lists the problems decoding found in this spec, such as a
	// timeout Go cannot parse (dropped, so treated as unset). Never serialised.
	Malformed []string `json:"-"`
}

// ControlRequest is a user's or GitOps tool's request, carried out by the controller.
type ControlRequest struct {
	// reason is recorded in the terminal outcome where the outcome has one.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason *string `json:"reason,omitempty"`
}

// OperationResult is what a completed operation produced.
type OperationResult struct {
	// content is the operation's output.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	Content string `json:"content,omitempty"`
	// isError marks content that describes an error the tool reported.
	// +optional
	IsError bool `json:"isError,omitempty"`
	// durationMs is how long the work took, as the agent measured it.
	// +optional
	// +kubebuilder:validation:Minimum=0
	DurationMs int64 `json:"durationMs,omitempty"`
	// tokensUsed is the number of model tokens the work used.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TokensUsed int64 `json:"tokensUsed,omitempty"`
}

// TerminalOutcome is how an operation ended. Its type always equals the
// terminal phase, and once written it never changes.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'Completed' ? has(self.result) : !has(self.result)",message="outcome.result is set exactly when outcome.type is Completed"
// +kubebuilder:validation:XValidation:rule="!has(self.error) || self.type == 'Failed'",message="outcome.error is only allowed when outcome.type is Failed"
// +kubebuilder:validation:XValidation:rule="!has(self.reason) || self.type in ['Aborted', 'Cancelled', 'Terminated']",message="outcome.reason is only allowed when outcome.type is Aborted, Cancelled or Terminated"
// +kubebuilder:validation:XValidation:rule="self.type != 'Terminated' || has(self.reason)",message="outcome.reason is required when outcome.type is Terminated"
type TerminalOutcome struct {
	// type is the kind of outcome; it equals the terminal phase.
	// +required
	// The field's type carries every phase as its enum (the type's marker
	// wins over a field's), so this rule names the six that may be an outcome.
	// +celgen:outcome-type: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
	// +kubebuilder:validation:XValidation:rule="self in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated']",messageExpression="'outcome.type must be a terminal phase (Completed, Failed, Aborted, Cancelled, Retired or Terminated), not ' + self"
	Type OperationPhase `json:"type,omitempty"`
	// result is set for Completed.
	// +optional
	Result *OperationResult `json:"result,omitempty"`
	// error is set for Failed.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Error string `json:"error,omitempty"`
	// reason is optional for Aborted and Cancelled and required for Terminated.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason *string `json:"reason,omitempty"`
}

// Progress is the latest progress an agent reported.
type Progress struct {
	// message is the latest progress message.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
	// percent is the latest completion fraction, within [0, 1].
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Percent *float64 `json:"percent,omitempty"`
	// count is the number of progress reports so far.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Count int64 `json:"count,omitempty"`
}

// TrustedPeer is how to reach a mob member's peer channel.
type TrustedPeer struct {
	// name is the peer's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name,omitempty"`
	// peerID is the peer's identity.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	PeerID string `json:"peerID,omitempty"`
	// address is where the peer listens, such as inproc://name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Address string `json:"address,omitempty"`
}

// PeerHandle is what a MobMemberChild reports at peer-ready.
type PeerHandle struct {
	// peerName is the member's peer name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	PeerName string `json:"peerName,omitempty"`
	// trustedPeer is the peer's spec.
	// +required
	TrustedPeer TrustedPeer `json:"trustedPeer,omitzero"`
}

// RejectionReason says why an operation was not admitted.
// +kubebuilder:validation:Enum=MaxConcurrentExceeded;OwnerTerminated
type RejectionReason string

const (
	// RejectionMaxConcurrentExceeded means the session was at its maxConcurrent limit.
	RejectionMaxConcurrentExceeded RejectionReason = "MaxConcurrentExceeded"
	// RejectionOwnerTerminated means the session had been terminated.
	RejectionOwnerTerminated RejectionReason = "OwnerTerminated"
)

// Rejection records why a session refused an operation.
type Rejection struct {
	// reason is why the operation was refused.
	// +required
	Reason RejectionReason `json:"reason,omitempty"`
	// limit is the session's maxConcurrent at the decision.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Limit *int32 `json:"limit,omitempty"`
	// active is the number of active operations at the decision.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Active *int32 `json:"active,omitempty"`
}

// OperationStatus is the lifecycle, written by the agent through the status
// subresource and by the controller. The API server enforces the transition
// table of docs/lifecycle.md: the rule on phase holds the whole table; the first
// rule here covers a status without a phase (Pending).
//
// Every rule here runs on every status write, and each access to a field of
// status costs the API server an allocation per property of status. So the
// rules below read as few fields as the common write needs: the seal reads
// only the old phase unless the operation is final.
//
// +celgen:status-unset-phase: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="has(oldSelf.phase) ? has(self.phase) || oldSelf.phase == 'Pending' : !has(self.phase) || self.phase in ['Pending', 'Provisioning', 'Rejected', 'Cancelled', 'Terminated']",messageExpression="!has(oldSelf.phase) ? 'invalid lifecycle transition: Pending -> ' + self.phase : oldSelf.phase in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated', 'Rejected'] ? 'invalid lifecycle transition: ' + oldSelf.phase + ' -> <unset>: ' + oldSelf.phase + ' is final' : 'invalid lifecycle transition: ' + oldSelf.phase + ' -> <unset>'"
// +celgen:status-outcome: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="has(self.outcome) ? self.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated'] && self.outcome.type == self.phase : !(self.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated'])",messageExpression="!has(self.outcome) ? 'status.outcome is required in terminal phase ' + self.phase : !(self.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated']) ? 'status.outcome is only allowed in a terminal phase, not ' + (has(self.phase) ? self.phase : 'Pending') : 'status.outcome.type ' + self.outcome.type + ' does not match phase ' + self.phase"
// +kubebuilder:validation:XValidation:rule="!has(self.peerHandle) || self.peerReady",message="status.peerHandle requires status.peerReady"
//
// Once the phase is final the status is sealed: only conditions and
// observedGeneration, which the controller keeps true to the phase, change.
//
// +celgen:status-seal: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="!(oldSelf.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated', 'Rejected']) || ((has(self.progress) ? has(oldSelf.progress) && self.progress == oldSelf.progress : !has(oldSelf.progress)) && (has(self.peerReady) ? has(oldSelf.peerReady) && self.peerReady == oldSelf.peerReady : !has(oldSelf.peerReady)) && (has(self.peerHandle) ? has(oldSelf.peerHandle) && self.peerHandle == oldSelf.peerHandle : !has(oldSelf.peerHandle)) && (has(self.rejection) ? has(oldSelf.rejection) && self.rejection == oldSelf.rejection : !has(oldSelf.rejection)) && (has(self.createdAt) ? has(oldSelf.createdAt) && self.createdAt == oldSelf.createdAt : !has(oldSelf.createdAt)) && (has(self.admittedAt) ? has(oldSelf.admittedAt) && self.admittedAt == oldSelf.admittedAt : !has(oldSelf.admittedAt)) && (has(self.startedAt) ? has(oldSelf.startedAt) && self.startedAt == oldSelf.startedAt : !has(oldSelf.startedAt)) && (has(self.completedAt) ? has(oldSelf.completedAt) && self.completedAt == oldSelf.completedAt : !has(oldSelf.completedAt)) && (has(self.lastHeartbeatTime) ? has(oldSelf.lastHeartbeatTime) && self.lastHeartbeatTime == oldSelf.lastHeartbeatTime : !has(oldSelf.lastHeartbeatTime)))",messageExpression="'status.' + (!(has(self.progress) ? has(oldSelf.progress) && self.progress == oldSelf.progress : !has(oldSelf.progress)) ? 'progress' : !(has(self.peerHandle) ? has(oldSelf.peerHandle) && self.peerHandle == oldSelf.peerHandle : !has(oldSelf.peerHandle)) ? 'peerHandle' : !(has(self.peerReady) ? has(oldSelf.peerReady) && self.peerReady == oldSelf.peerReady : !has(oldSelf.peerReady)) ? 'peerReady' : !(has(self.rejection) ? has(oldSelf.rejection) && self.rejection == oldSelf.rejection : !has(oldSelf.rejection)) ? 'rejection' : !(has(self.createdAt) ? has(oldSelf.createdAt) && self.createdAt == oldSelf.createdAt : !has(oldSelf.createdAt)) ? 'createdAt' : !(has(self.admittedAt) ? has(oldSelf.admittedAt) && self.admittedAt == oldSelf.admittedAt : !has(oldSelf.admittedAt)) ? 'admittedAt' : !(has(self.startedAt) ? has(oldSelf.startedAt) && self.startedAt == oldSelf.startedAt : !has(oldSelf.startedAt)) ? 'startedAt' : !(has(self.completedAt) ? has(oldSelf.completedAt) && self.completedAt == oldSelf.completedAt : !has(oldSelf.completedAt)) ? 'completedAt' : 'lastHeartbeatTime') + ' cannot change: the operation is ' + oldSelf.phase + ', and the status of a finished operation is sealed'"
type OperationStatus struct {
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is the lifecycle state. Unset means Pending.
	// +optional
	// +celgen:phase-transitions: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
	// +kubebuilder:validation:XValidation:rule="self == oldSelf || self in (oldSelf == 'Pending' ? ['Provisioning', 'Rejected', 'Cancelled', 'Terminated'] : oldSelf == 'Provisioning' ? ['Running', 'Failed', 'Aborted', 'Cancelled', 'Terminated'] : oldSelf == 'Running' ? ['Retiring', 'Completed', 'Failed', 'Cancelled', 'Retired', 'Terminated'] : oldSelf == 'Retiring' ? ['Completed', 'Failed', 'Cancelled', 'Retired', 'Terminated'] : [])",messageExpression="oldSelf in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated', 'Rejected'] ? 'invalid lifecycle transition: ' + oldSelf + ' -> ' + self + ': ' + oldSelf + ' is final' : 'invalid lifecycle transition: ' + oldSelf + ' -> ' + self"
	Phase OperationPhase `json:"phase,omitempty"`

	// conditions are Terminal and Ready, plus Reconciling or Stalled while
	// True (kstatus reads them as False when absent).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.size() <= 12 || self.filter(c, !(c.type in ['Terminal', 'Ready', 'Reconciling', 'Stalled'])).size() <= 12",message="status.conditions: at most 12 conditions besides Terminal, Ready, Reconciling and Stalled, so that the controller's own always fit within 16"
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// progress is the latest progress report.
	// +optional
	Progress *Progress `json:"progress,omitempty"`

	// peerReady is true once a MobMemberChild reported its peer channel.
	// +optional
	PeerReady bool `json:"peerReady,omitempty"`

	// peerHandle is the handle reported at peer-ready.
	// +optional
	PeerHandle *PeerHandle `json:"peerHandle,omitempty"`

	// outcome is set exactly when the phase is terminal, and never changes.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",messageExpression="'status.outcome is immutable once written: the operation is already ' + oldSelf.type"
	Outcome *TerminalOutcome `json:"outcome,omitempty"`

	// rejection says why a session refused the operation.
	// +optional
	Rejection *Rejection `json:"rejection,omitempty"`

	// createdAt is when the operation was registered, in microseconds.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`
	CreatedAt *metav1.MicroTime `json:"createdAt,omitempty"`
	// admittedAt is when the session admitted the operation.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`
	AdmittedAt *metav1.MicroTime `json:"admittedAt,omitempty"`
	// startedAt is when provisioning succeeded.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`
	StartedAt *metav1.MicroTime `json:"startedAt,omitempty"`
	// completedAt is when the operation became terminal.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="status.completedAt is immutable once written"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`
	CompletedAt *metav1.MicroTime `json:"completedAt,omitempty"`
	// lastHeartbeatTime is the latest agent status write; heartbeatTimeout counts from it.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`
	LastHeartbeatTime *metav1.MicroTime `json:"lastHeartbeatTime,omitempty"`

	// Malformed lists the problems decoding found in this status, such as a
	// timestamp without six fractional digits (read anyway) or an unreadable
	// one (dropped). Never serialised.
	Malformed []string `json:"-"`
}

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

// Operation is one background tool job or mob member child of a session.
//
// The rules on status above run only when both the old and the new object
// have a status. These two, at the root, cover the first status write (a
// missing old status is Pending) and the removal of a finished status.
//
// A control request is write-once while it can still take effect (the rule
// on each request refuses a change); once the operation is final a GitOps
// tool may remove it from Git (and so from the spec), and the outcome stays.
//
// +celgen:spec-write-once: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="((!has(oldSelf.spec.cancel) || has(self.spec.cancel)) && (!has(oldSelf.spec.retire) || has(self.spec.retire)) && (!has(oldSelf.spec.abort) || has(self.spec.abort))) || (has(oldSelf.status) && oldSelf.status.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated', 'Rejected'])",messageExpression="'spec.' + (has(oldSelf.spec.cancel) && !has(self.spec.cancel) ? 'cancel' : has(oldSelf.spec.retire) && !has(self.spec.retire) ? 'retire' : 'abort') + ' is write-once: it cannot be changed, nor removed before the operation is final'"
// +celgen:first-status: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="has(oldSelf.status) || !has(self.status) || !has(self.status.phase) || self.status.phase in ['Pending', 'Provisioning', 'Rejected', 'Cancelled', 'Terminated']",messageExpression="'invalid lifecycle transition: Pending -> ' + self.status.phase"
// +celgen:status-removal: generated from pkg/lifecycle's table by hack/celgen (make manifests); edit the table or hack/celgen/rules.go, not the rule below
// +kubebuilder:validation:XValidation:rule="has(self.status) || !has(oldSelf.status) || !(oldSelf.status.?phase.orValue('Pending') in ['Completed', 'Failed', 'Aborted', 'Cancelled', 'Retired', 'Terminated', 'Rejected'])",messageExpression="'status cannot be removed: the operation is ' + oldSelf.status.phase + ', and the status of a finished operation is sealed'"
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ops;op,categories=meerkat
// +kubebuilder:selectablefield:JSONPath=`.spec.sessionName`
// +kubebuilder:selectablefield:JSONPath=`.spec.kind`
// +kubebuilder:selectablefield:JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Session",type=string,JSONPath=`.spec.sessionName`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.kind`
// +kubebuilder:printcolumn:name="Progress",type=number,JSONPath=`.status.progress.percent`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Display",type=string,JSONPath=`.spec.displayName`,priority=1
// +kubebuilder:printcolumn:name="Reports",type=integer,JSONPath=`.status.progress.count`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
type Operation struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what an agent or a user declares about the operation: its
	// identity (immutable) and control requests (write-once).
	// +required
	Spec OperationSpec `json:"spec,omitzero"`
	// status is the operation's lifecycle, written by the agent through the
	// status subresource and by the controller; the API server enforces the
	// transition table of docs/lifecycle.md. Once the phase is final the
	// status is sealed: only conditions and observedGeneration change.
	// +optional
	Status OperationStatus `json:"status,omitempty"`
}

// OperationList is a list of Operations.
//
// +kubebuilder:object:root=true
type OperationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Operation `json:"items"`
}
