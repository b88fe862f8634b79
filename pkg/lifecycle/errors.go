package lifecycle

import (
	"errors"
	"fmt"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
)

// Sentinels for errors.Is. Each typed error below matches its sentinel, and
// errors.As on the typed error gives its fields; its text is the sentinel's
// followed by those fields (docs/lifecycle.md lists them).
var (
	ErrNotFound               = errors.New("operation not found")
	ErrAlreadyRegistered      = errors.New("operation already registered")
	ErrInvalidTransition      = errors.New("invalid lifecycle transition")
	ErrPeerNotExpected        = errors.New("peer not expected")
	ErrAlreadyPeerReady       = errors.New("operation already peer-ready")
	ErrMaxConcurrentExceeded  = errors.New("max concurrent operations exceeded")
	ErrDuplicateWaitOperation = errors.New("duplicate operation in wait request")
)

// NotFoundError: the operation does not exist, or was evicted or collected.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string        { return fmt.Sprintf("%v: %s", ErrNotFound, e.ID) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// AlreadyRegisteredError: the id is still retained, even as terminal.
type AlreadyRegisteredError struct{ ID string }

func (e *AlreadyRegisteredError) Error() string {
	return fmt.Sprintf("%v: %s", ErrAlreadyRegistered, e.ID)
}
func (e *AlreadyRegisteredError) Is(target error) bool { return target == ErrAlreadyRegistered }

// InvalidTransitionError: the call is not allowed from the operation's status.
type InvalidTransitionError struct {
	ID     string
	Status opsv1.OperationPhase
	Action string
}

func (e *InvalidTransitionError) Error() string {
	return fmt.Sprintf("%v for %s: %s -> %s", ErrInvalidTransition, e.ID, e.Status, e.Action)
}
func (e *InvalidTransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// PeerNotExpectedError: peer_ready on an operation that is not a MobMemberChild.
type PeerNotExpectedError struct{ ID string }

func (e *PeerNotExpectedError) Error() string {
	return fmt.Sprintf("%v for operation %s: only MobMemberChild reports peer-ready", ErrPeerNotExpected, e.ID)
}
func (e *PeerNotExpectedError) Is(target error) bool { return target == ErrPeerNotExpected }

// AlreadyPeerReadyError: peer_ready a second time.
type AlreadyPeerReadyError struct{ ID string }

func (e *AlreadyPeerReadyError) Error() string {
	return fmt.Sprintf("%v: %s", ErrAlreadyPeerReady, e.ID)
}
func (e *AlreadyPeerReadyError) Is(target error) bool { return target == ErrAlreadyPeerReady }

// MaxConcurrentExceededError: the session had active >= limit at registration.
// Its text is also the message of a Rejected operation (RejectionMessage).
type MaxConcurrentExceededError struct{ Limit, Active int }

func (e *MaxConcurrentExceededError) Error() string {
	return fmt.Sprintf("%v: limit %d, active %d", ErrMaxConcurrentExceeded, e.Limit, e.Active)
}
func (e *MaxConcurrentExceededError) Is(target error) bool {
	return target == ErrMaxConcurrentExceeded
}

// DuplicateWaitOperationError: wait_all was given the same id twice.
type DuplicateWaitOperationError struct{ ID string }

func (e *DuplicateWaitOperationError) Error() string {
	return fmt.Sprintf("%v: %s", ErrDuplicateWaitOperation, e.ID)
}
func (e *DuplicateWaitOperationError) Is(target error) bool {
	return target == ErrDuplicateWaitOperation
}
