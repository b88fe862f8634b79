package main

// The names of the rules, as in their tags ("// +celgen:<name>").
const (
	ruleOutcomeType      = "outcome-type"
	ruleStatusUnsetPhase = "status-unset-phase"
	ruleStatusOutcome    = "status-outcome"
	ruleStatusSeal       = "status-seal"
	rulePhaseTransitions = "phase-transitions"
	ruleSpecWriteOnce    = "spec-write-once"
	ruleFirstStatus      = "first-status"
	ruleStatusRemoval    = "status-removal"
)

// rules are the CEL rules of api/v1alpha1/operation_types.go that name
// lifecycle phases, by the name of their tag. Each is a text/template of the
// marker (without the leading "// "), executed on a Table:
//
//	{{list .Terminal}}            ['Completed', 'Failed', ...]
//	{{prose .Terminal}}           Completed, Failed, ... or Terminated
//	{{list .Final}}               the terminal phases and Rejected
//	{{list .FirstWrite}}          Pending and the phases Pending may move to
//	{{.Transitions "oldSelf"}}    oldSelf == 'Pending' ? [...] : ... : []
//	{{.Refusal}}                  invalid lifecycle transition
//	{{unchanged "progress"}}      self.progress equals oldSelf.progress, unset included
//
// Everything else is written here as it appears in the CRD. To change one of
// these rules, edit it here and run make manifests.
var rules = []struct{ name, marker string }{
	// On TerminalOutcome.type: the field's type carries every phase as its
	// enum, so this names the terminal ones.
	{ruleOutcomeType, `+kubebuilder:validation:XValidation:rule="self in {{list .Terminal}}",` +
		`messageExpression="'outcome.type must be a terminal phase ({{prose .Terminal}}), not ' + self"`},

	// On OperationStatus: a status without a phase (Pending) may only move to
	// a phase Pending may move to; a phase, once set, stays set.
	{ruleStatusUnsetPhase, `+kubebuilder:validation:XValidation:rule="has(oldSelf.phase) ? has(self.phase) || oldSelf.phase == 'Pending' : !has(self.phase) || self.phase in {{list .FirstWrite}}",` +
		`messageExpression="!has(oldSelf.phase) ? '{{.Refusal}}: Pending -> ' + self.phase : oldSelf.phase in {{list .Final}} ? '{{.Refusal}}: ' + oldSelf.phase + ' -> <unset>: ' + oldSelf.phase + ' is final' : '{{.Refusal}}: ' + oldSelf.phase + ' -> <unset>'"`},

	// On OperationStatus: an outcome exactly in a terminal phase, of that type.
	{ruleStatusOutcome, `+kubebuilder:validation:XValidation:rule="has(self.outcome) ? self.?phase.orValue('Pending') in {{list .Terminal}} && self.outcome.type == self.phase : !(self.?phase.orValue('Pending') in {{list .Terminal}})",` +
		`messageExpression="!has(self.outcome) ? 'status.outcome is required in terminal phase ' + self.phase : !(self.?phase.orValue('Pending') in {{list .Terminal}}) ? 'status.outcome is only allowed in a terminal phase, not ' + (has(self.phase) ? self.phase : 'Pending') : 'status.outcome.type ' + self.outcome.type + ' does not match phase ' + self.phase"`},

	// On OperationStatus: once final, the status is sealed (conditions and
	// observedGeneration aside; phase and outcome have rules of their own).
	{ruleStatusSeal, `+kubebuilder:validation:XValidation:rule="!(oldSelf.?phase.orValue('Pending') in {{list .Final}}) || (` +
		`{{unchanged "progress"}} && {{unchanged "peerReady"}} && {{unchanged "peerHandle"}} && {{unchanged "rejection"}} && ` +
		`{{unchanged "createdAt"}} && {{unchanged "admittedAt"}} && {{unchanged "startedAt"}} && {{unchanged "completedAt"}} && ` +
		`{{unchanged "lastHeartbeatTime"}})",` +
		`messageExpression="'status.' + (!{{unchanged "progress"}} ? 'progress' : !{{unchanged "peerHandle"}} ? 'peerHandle' : ` +
		`!{{unchanged "peerReady"}} ? 'peerReady' : !{{unchanged "rejection"}} ? 'rejection' : !{{unchanged "createdAt"}} ? 'createdAt' : ` +
		`!{{unchanged "admittedAt"}} ? 'admittedAt' : !{{unchanged "startedAt"}} ? 'startedAt' : !{{unchanged "completedAt"}} ? 'completedAt' : ` +
		`'lastHeartbeatTime') + ' cannot change: the operation is ' + oldSelf.phase + ', and the status of a finished operation is sealed'"`},

	// On OperationStatus.phase: the whole transition table, for every writer.
	{rulePhaseTransitions, `+kubebuilder:validation:XValidation:rule="self == oldSelf || self in ({{.Transitions "oldSelf"}})",` +
		`messageExpression="oldSelf in {{list .Final}} ? '{{.Refusal}}: ' + oldSelf + ' -> ' + self + ': ' + oldSelf + ' is final' : '{{.Refusal}}: ' + oldSelf + ' -> ' + self"`},

	// On Operation: a control request may leave the spec once the operation is final.
	{ruleSpecWriteOnce, `+kubebuilder:validation:XValidation:rule="((!has(oldSelf.spec.cancel) || has(self.spec.cancel)) && (!has(oldSelf.spec.retire) || has(self.spec.retire)) && (!has(oldSelf.spec.abort) || has(self.spec.abort))) || (has(oldSelf.status) && oldSelf.status.?phase.orValue('Pending') in {{list .Final}})",` +
		`messageExpression="'spec.' + (has(oldSelf.spec.cancel) && !has(self.spec.cancel) ? 'cancel' : has(oldSelf.spec.retire) && !has(self.spec.retire) ? 'retire' : 'abort') + ' is write-once: it cannot be changed, nor removed before the operation is final'"`},

	// On Operation: the first status write starts from Pending.
	{ruleFirstStatus, `+kubebuilder:validation:XValidation:rule="has(oldSelf.status) || !has(self.status) || !has(self.status.phase) || self.status.phase in {{list .FirstWrite}}",` +
		`messageExpression="'{{.Refusal}}: Pending -> ' + self.status.phase"`},

	// On Operation: a final status cannot be removed.
	{ruleStatusRemoval, `+kubebuilder:validation:XValidation:rule="has(self.status) || !has(oldSelf.status) || !(oldSelf.status.?phase.orValue('Pending') in {{list .Final}})",` +
		`messageExpression="'status cannot be removed: the operation is ' + oldSelf.status.phase + ', and the status of a finished operation is sealed'"`},
}
