package health

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const argocdDir = "../../config/argocd"

// Argo CD's health statuses (gitops-engine's HealthStatusCode).
const (
	healthy     = "Healthy"
	progressing = "Progressing"
	degraded    = "Degraded"
	suspended   = "Suspended"
	missing     = "Missing"
	unknown     = "Unknown"
)

// notObservedYet is the message while the controller has not caught up with
// a spec edit (every fixture's edit makes generation 2).
const notObservedYet = "waiting for the controller to observe generation 2 (observed 1)"

// argoRow is what the Argo CD health check should return for a fixture.
type argoRow struct {
	status string
	// message must appear in hs.message (which must not be empty).
	message string
}

var operationArgo = map[string]argoRow{
	opNoStatus:                 {progressing, "waiting for admission by session demo-session: no status yet"},
	opWaitingForAdmission:      {progressing, "waiting for admission by session demo-session"},
	opQueued:                   {progressing, "queued: session demo-session is at its maxConcurrent limit of 2"},
	opSessionMissing:           {degraded, `OpsSession "demo-session" does not exist`},
	opQueuedThenSessionDeleted: {degraded, `OpsSession "demo-session" does not exist`},
	opSessionMissingThenQueued: {progressing, "queued: session demo-session is at its maxConcurrent limit of 2"},
	opProvisioning:             {progressing, "waiting for the agent to finish provisioning"},
	opRunning:                  {healthy, "running"},
	opCancelNotObserved:        {progressing, notObservedYet},
	opRetiring:                 {progressing, "retiring"},
	opCompleted:                {healthy, "completed"},
	opCompletedThenEdited:      {progressing, notObservedYet},
	opFailed:                   {degraded, "failed: tool exited with status 2"},
	opAborted:                  {healthy, "aborted: mob stopping"},
	opCancelled:                {healthy, "cancelled: not needed"},
	opRetired:                  {healthy, "retired"},
	opTerminated:               {healthy, "terminated: mob disbanded"},
	opRejected:                 {degraded, "rejected: max concurrent operations exceeded: limit 2, active 2"},
}

var sessionArgo = map[string]argoRow{
	sessionNoStatus:    {progressing, "no status yet"},
	sessionReady:       {healthy, "Queue admission, maxConcurrent 2"},
	sessionSpecEdited:  {progressing, notObservedYet},
	sessionTerminating: {progressing, "terminating operations: mob disbanded"},
	sessionTerminated:  {healthy, "every non-terminal operation was terminated: mob disbanded"},
	sessionDeleting:    {progressing, "Pending deletion"},
}

// argoFor is the fixed mapping between the two tables. Terminating (kstatus,
// deletionTimestamp set) is what Argo CD calls "Pending deletion", Progressing.
var argoFor = map[status.Status]string{
	status.CurrentStatus:     healthy,
	status.InProgressStatus:  progressing,
	status.FailedStatus:      degraded,
	status.TerminatingStatus: progressing,
}

func TestArgoCDOperations(t *testing.T) {
	checkArgo(t, "operation_health.lua", operationFixtures(t), operationArgo)
}

func TestArgoCDOpsSessions(t *testing.T) {
	checkArgo(t, "opssession_health.lua", sessionFixtures(t), sessionArgo)
}

func checkArgo(t *testing.T, file string, fixtures []fixture, table map[string]argoRow) {
	t.Helper()
	script := readScript(t, file)
	checkRows(t, fixtures, table)
	for _, f := range fixtures {
		row, ok := table[f.name]
		if !ok {
			continue
		}
		st, msg, err := runHealthLua(script, f.obj)
		if err != nil {
			t.Errorf("%s: %s: %v", f.name, file, err)
			continue
		}
		if st != row.status || msg == "" || !strings.Contains(msg, row.message) {
			t.Errorf("%s: %s says %s %q, want %s with %q\nconditions: %s",
				f.name, file, st, msg, row.status, row.message, conditionSummary(f))
		}
	}
}

// TestTablesAgree checks, for every fixture, that the Argo CD table says
// what the kstatus table wants, by the fixed mapping.
func TestTablesAgree(t *testing.T) {
	for _, c := range []struct {
		kstatus map[string]kstatusRow
		argo    map[string]argoRow
	}{{operationKstatus, operationArgo}, {sessionKstatus, sessionArgo}} {
		if len(c.kstatus) != len(c.argo) {
			t.Errorf("the tables have %d and %d rows", len(c.kstatus), len(c.argo))
		}
		for name, k := range c.kstatus {
			a, ok := c.argo[name]
			switch want, mapped := argoFor[k.want]; {
			case !ok:
				t.Errorf("%s: in the kstatus table only", name)
			case !mapped:
				t.Errorf("%s: kstatus %s has no Argo CD counterpart", name, k.want)
			case a.status != want:
				t.Errorf("%s: kstatus wants %s, so Argo CD should say %s, but the table says %s", name, k.want, want, a.status)
			}
		}
	}
}

// TestArgoCDConfigMapInlinesTheScripts checks the snippet's copies.
func TestArgoCDConfigMapInlinesTheScripts(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(argocdDir, "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatalf("argocd-cm.yaml: %v", err)
	}
	if cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" || cm.Namespace != "argocd" {
		t.Errorf("argocd-cm.yaml is %s %s/%s, want ConfigMap argocd/argocd-cm", cm.Kind, cm.Namespace, cm.Name)
	}
	want := map[string]string{
		"resource.customizations.health.ops.meerkat.dev_Operation":  "operation_health.lua",
		"resource.customizations.health.ops.meerkat.dev_OpsSession": "opssession_health.lua",
	}
	for key, file := range want {
		got, ok := cm.Data[key]
		switch {
		case !ok:
			t.Errorf("argocd-cm.yaml has no %s", key)
		case got != readScript(t, file):
			t.Errorf("argocd-cm.yaml's %s is not a copy of %s", key, file)
		}
	}
	if len(cm.Data) != len(want) {
		t.Errorf("argocd-cm.yaml has %d keys, want %d", len(cm.Data), len(want))
	}
}

// TestArgoCDHarnessCanFail makes sure the harness notices wrong answers: a
// script that uses a library Argo CD does not open, a script that returns an
// invalid status, and a fixture changed under the real script.
func TestArgoCDHarnessCanFail(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	if _, _, err := runHealthLua(`return {status = string.lower("Healthy")}`, obj); err == nil {
		t.Error("string.lower ran; Argo CD does not open the string library")
	}
	if st, _, err := runHealthLua(`return {status = "Fine"}`, obj); err != nil || st != unknown {
		t.Errorf("an invalid status gave %s, %v; Argo CD makes it Unknown", st, err)
	}
	script := readScript(t, "operation_health.lua")
	for _, f := range operationFixtures(t) {
		if f.name != opRunning {
			continue
		}
		o := f.obj.DeepCopy()
		if err := unstructured.SetNestedField(o.Object, "Failed", "status", "phase"); err != nil {
			t.Fatal(err)
		}
		if st, _, err := runHealthLua(script, o); err != nil || st == operationArgo[opRunning].status {
			t.Errorf("a Running fixture changed to Failed still says %s (%v)", st, err)
		}
	}
}

// TestHealthTables prints both tables as Markdown (go test -v -run TestHealthTables).
func TestHealthTables(t *testing.T) {
	for _, c := range []struct {
		title    string
		file     string
		fixtures []fixture
		kstatus  map[string]kstatusRow
	}{
		{"Operation", "operation_health.lua", operationFixtures(t), operationKstatus},
		{"OpsSession", "opssession_health.lua", sessionFixtures(t), sessionKstatus},
	} {
		script := readScript(t, c.file)
		var b strings.Builder
		fmt.Fprintf(&b, "\n| %s | kstatus | Argo CD | why |\n|---|---|---|---|\n", c.title)
		for _, f := range c.fixtures {
			res, err := status.Compute(f.obj)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := runHealthLua(script, f.obj)
			if err != nil {
				t.Fatal(err)
			}
			k := c.kstatus[f.name]
			ks := string(res.Status)
			if k.gap != "" {
				ks = fmt.Sprintf("**%s** (want %s)", res.Status, k.want)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.name, ks, st, k.why)
		}
		t.Log(b.String())
	}
}

func readScript(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(argocdDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runHealthLua runs a health script as Argo CD's controller does
// (argo-cd util/lua): only the package, base and table libraries, a
// one-second limit, obj as a Lua table, and the returned table's status,
// which must be one of Argo CD's health statuses or becomes Unknown.
func runHealthLua(script string, obj *unstructured.Unstructured) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	st, msg := lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
	switch st {
	case healthy, progressing, degraded, suspended, missing, unknown:
	default:
		return unknown, "Lua returned an invalid health status", nil
	}
	return st, msg, nil
}

// toLua converts an unstructured value to Lua as Argo CD does: maps to
// tables with string keys, slices to arrays from 1, numbers to numbers.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	case nil:
		return lua.LNil
	}
	panic(fmt.Sprintf("toLua: unexpected %T", v))
}
