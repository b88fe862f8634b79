// Package opsclient is the Go client in-cluster agents use to run Meerkat
// operations on Kubernetes. It mirrors the Meerkat runtime: a Runtime
// registers sessions and hands out each session's Registry, whose calls
// (RegisterOperation, ProvisioningSucceeded, ReportProgress,
// CompleteOperation, RegisterWatcher, WaitAll, CollectCompleted, ...) have
// the semantics and errors of docs/lifecycle.md.
//
// The API server is the store and the authority: every call is a read and at
// most one optimistic-locked status write, which the CRD's CEL rules check
// again. Watchers are Kubernetes watches on the operation.
package opsclient

import (
	"time"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/pkg/lifecycle"
)

// The lifecycle errors, re-exported so agents need import only this package.
// Use errors.Is with the sentinels and errors.As with the typed errors.
var (
	ErrNotFound               = lifecycle.ErrNotFound
	ErrAlreadyRegistered      = lifecycle.ErrAlreadyRegistered
	ErrInvalidTransition      = lifecycle.ErrInvalidTransition
	ErrPeerNotExpected        = lifecycle.ErrPeerNotExpected
	ErrAlreadyPeerReady       = lifecycle.ErrAlreadyPeerReady
	ErrMaxConcurrentExceeded  = lifecycle.ErrMaxConcurrentExceeded
	ErrDuplicateWaitOperation = lifecycle.ErrDuplicateWaitOperation
)

type (
	NotFoundError               = lifecycle.NotFoundError
	AlreadyRegisteredError      = lifecycle.AlreadyRegisteredError
	InvalidTransitionError      = lifecycle.InvalidTransitionError
	PeerNotExpectedError        = lifecycle.PeerNotExpectedError
	AlreadyPeerReadyError       = lifecycle.AlreadyPeerReadyError
	MaxConcurrentExceededError  = lifecycle.MaxConcurrentExceededError
	DuplicateWaitOperationError = lifecycle.DuplicateWaitOperationError
)

// Outcome is a terminal outcome: Completed(result), Failed{error},
// Aborted{reason?}, Cancelled{reason?}, Retired or Terminated{reason}.
type Outcome = opsv1.TerminalOutcome

// OperationSpec describes an operation to register.
type OperationSpec struct {
	// ID names the Operation object; NewOperationID makes one.
	ID                string
	Kind              opsv1.OperationKind
	DisplayName       string
	SourceLabel       string
	ChildSessionID    string
	ExpectPeerChannel bool
	// ProvisioningTimeout and HeartbeatTimeout, when set, fail the operation
	// if the agent goes quiet.
	ProvisioningTimeout time.Duration
	HeartbeatTimeout    time.Duration
}

// ProgressUpdate is one progress report. Percent is within [0, 1].
type ProgressUpdate struct {
	Message string
	Percent *float64
}

// Snapshot is an operation's state as the registry sees it.
type Snapshot struct {
	ID              string
	Status          opsv1.OperationPhase
	Kind            opsv1.OperationKind
	DisplayName     string
	PeerReady       bool
	PeerHandle      *opsv1.PeerHandle
	ProgressCount   int64
	ProgressMessage string
	ProgressPercent *float64
	// WatcherCount is the number of this registry's watchers still pending.
	WatcherCount    int
	ChildSessionID  string
	TerminalOutcome *Outcome
	// Times in Unix milliseconds. ElapsedMs is CompletedAtMs - CreatedAtMs.
	CreatedAtMs   int64
	StartedAtMs   *int64
	CompletedAtMs *int64
	ElapsedMs     *int64
}

// OperationOutcome pairs an operation id with its terminal outcome.
type OperationOutcome struct {
	ID      string
	Outcome Outcome
}

// WaitAllResult is what WaitAll returns: outcomes in the order asked for,
// and the satisfied wait request.
type WaitAllResult struct {
	Outcomes  []OperationOutcome
	Satisfied WaitSatisfied
}

// WaitSatisfied identifies a completed wait request.
type WaitSatisfied struct {
	RunID         string
	WaitRequestID string
	OperationIDs  []string
}

// SessionConfig holds a new session's limits. Zero values mean the defaults:
// unlimited concurrency, 256 retained, Reject.
type SessionConfig struct {
	MaxConcurrent   *int32
	MaxCompleted    *int32
	AdmissionPolicy opsv1.AdmissionPolicy
}
