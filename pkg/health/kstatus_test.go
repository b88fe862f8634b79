package health

import (
	"testing"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// kstatusRow is what kstatus (Flux, kpt, cli-utils, `kubectl wait` users
// reading Ready) should say about a fixture, and why.
type kstatusRow struct {
	want status.Status
	why  string
	// gap, when set, is what kstatus says today instead of want, because the
	// conditions the controller writes do not say want (yet). The test fails
	// when kstatus says anything else, including want: then the gap is
	// closed and the row must lose its gap.
	gap status.Status
}

// operationKstatus is the table for Operations, by fixture name.
var operationKstatus = map[string]kstatusRow{
	opNoStatus: {want: status.InProgressStatus, gap: status.CurrentStatus,
		why: "not admitted yet; kstatus cannot tell a status nobody wrote from a resource without conditions, and calls it Current"},
	opWaitingForAdmission: {want: status.InProgressStatus, why: "Reconciling=True (Pending)"},
	opQueued:              {want: status.InProgressStatus, why: "Reconciling=True (Queued): waits for a slot"},
	opSessionMissing: {want: status.FailedStatus,
		why: "Stalled=True (SessionNotFound), no Reconciling: nothing happens until someone creates the session"},
	opQueuedThenSessionDeleted: {want: status.FailedStatus, why: "Stalled=True (SessionNotFound) replaces Reconciling=True (Queued)"},
	opSessionMissingThenQueued: {want: status.InProgressStatus, why: "Reconciling=True (Queued) replaces Stalled=True"},
	opProvisioning:             {want: status.InProgressStatus, why: "Reconciling=True (Provisioning)"},
	opRunning:                  {want: status.CurrentStatus, why: "Ready=True: the operation does what it was created for"},
	opCancelNotObserved:        {want: status.InProgressStatus, why: "observedGeneration behind generation: the cancel is not carried out yet"},
	opRetiring:                 {want: status.InProgressStatus, why: "Ready=True and Reconciling=True (Retiring): still serving, winding down towards Retired"},
	opCompleted:                {want: status.CurrentStatus, why: "final, ended as asked (Ready=True, Terminal=True)"},
	opCompletedThenEdited: {want: status.InProgressStatus,
		why: "observedGeneration behind generation, until the controller brings the conditions to it (seconds), then Current"},
	opFailed:     {want: status.FailedStatus, why: "Stalled=True (Failed), Terminal=True"},
	opAborted:    {want: status.CurrentStatus, why: "final, ended as asked (spec.abort)"},
	opCancelled:  {want: status.CurrentStatus, why: "final, ended as asked (spec.cancel)"},
	opRetired:    {want: status.CurrentStatus, why: "final, ended as asked (spec.retire)"},
	opTerminated: {want: status.CurrentStatus, why: "final, ended as asked (the session's termination)"},
	opRejected:   {want: status.FailedStatus, why: "Stalled=True (MaxConcurrentExceeded), Terminal=True: will never run"},
}

// sessionKstatus is the table for OpsSessions, by fixture name.
var sessionKstatus = map[string]kstatusRow{
	sessionNoStatus: {want: status.InProgressStatus, gap: status.CurrentStatus,
		why: "the controller has not processed it; kstatus calls a resource without status Current"},
	sessionReady:      {want: status.CurrentStatus, why: "Ready=True at the current generation"},
	sessionSpecEdited: {want: status.InProgressStatus, why: "observedGeneration behind generation"},
	sessionTerminating: {want: status.InProgressStatus,
		why: "Reconciling=True (TerminationRequested) and Terminated=False: operations still to terminate"},
	sessionTerminated: {want: status.CurrentStatus, why: "Terminated=True: terminate_owner carried out"},
	sessionDeleting: {want: status.TerminatingStatus,
		why: "deletionTimestamp set; the finalizer terminates its operations first"},
}

func TestKstatusOperations(t *testing.T) {
	checkKstatus(t, operationFixtures(t), operationKstatus)
}

func TestKstatusOpsSessions(t *testing.T) {
	checkKstatus(t, sessionFixtures(t), sessionKstatus)
}

func checkKstatus(t *testing.T, fixtures []fixture, table map[string]kstatusRow) {
	t.Helper()
	checkRows(t, fixtures, table)
	for _, f := range fixtures {
		row, ok := table[f.name]
		if !ok {
			continue
		}
		res, err := status.Compute(f.obj)
		if err != nil {
			t.Errorf("%s: kstatus: %v", f.name, err)
			continue
		}
		switch {
		case row.gap == "" && res.Status != row.want:
			t.Errorf("%s: kstatus says %s (%q), want %s: %s\nconditions: %s",
				f.name, res.Status, res.Message, row.want, row.why, conditionSummary(f))
		case row.gap != "" && res.Status == row.want:
			t.Errorf("%s: kstatus now says %s as wanted: the gap is closed, remove it from the table", f.name, res.Status)
		case row.gap != "" && res.Status != row.gap:
			t.Errorf("%s: kstatus says %s (%q); the table records the gap as %s (want %s)\nconditions: %s",
				f.name, res.Status, res.Message, row.gap, row.want, conditionSummary(f))
		case row.gap != "":
			t.Logf("known gap: %s: kstatus says %s (%q), want %s; conditions: %s",
				f.name, res.Status, res.Message, row.want, conditionSummary(f))
		}
	}
}

// checkRows fails on a fixture without a row or a row without a fixture.
func checkRows[R any](t *testing.T, fixtures []fixture, table map[string]R) {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range fixtures {
		if seen[f.name] {
			t.Errorf("two fixtures named %q", f.name)
		}
		seen[f.name] = true
		if _, ok := table[f.name]; !ok {
			t.Errorf("fixture %q has no row in the table", f.name)
		}
	}
	for name := range table {
		if !seen[name] {
			t.Errorf("row %q has no fixture", name)
		}
	}
}

// TestKstatusTableCanFail feeds kstatus an object the table does not
// describe (a Running operation with Stalled=True) to make sure the
// comparison notices a wrong answer.
func TestKstatusTableCanFail(t *testing.T) {
	var running fixture
	for _, f := range operationFixtures(t) {
		if f.name == opRunning {
			running = f
		}
	}
	obj := running.obj.DeepCopy()
	conds, _ := obj.Object["status"].(map[string]any)["conditions"].([]any)
	conds = append(conds, map[string]any{"type": "Stalled", "status": "True", "reason": "Broken", "message": "broken"})
	obj.Object["status"].(map[string]any)["conditions"] = conds
	res, err := status.Compute(obj)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status == operationKstatus[opRunning].want {
		t.Fatalf("kstatus says %s for a stalled Running operation; the table could not tell", res.Status)
	}
}
