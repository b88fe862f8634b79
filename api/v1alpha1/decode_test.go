package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	runtimejson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	restclientwatch "k8s.io/client-go/rest/watch"
	"sigs.k8s.io/yaml"
)

// The decoders client-go and controller-runtime use for a CRD's typed
// objects: the apimachinery JSON serializer (sigs.k8s.io/json underneath)
// for single objects and lists, and for watches the same serializer behind
// the streaming decoder and client-go's watch-event decoder, as
// k8s.io/client-go/rest builds them.
func testCodecs(t *testing.T) (runtime.Decoder, func(io.ReadCloser) *restclientwatch.Decoder) {
	t.Helper()
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	metav1.AddToGroupVersion(s, GroupVersion)
	codecs := serializer.NewCodecFactory(s).WithoutConversion()
	js := runtimejson.NewSerializerWithOptions(runtimejson.DefaultMetaFactory, s, s, runtimejson.SerializerOptions{})
	dec := codecs.DecoderToVersion(js, GroupVersion)
	watchDec := func(r io.ReadCloser) *restclientwatch.Decoder {
		return restclientwatch.NewDecoder(streaming.NewDecoder(runtimejson.Framer.NewFrameReader(r), dec), dec)
	}
	return dec, watchDec
}

func opJSON(spec, status string) string {
	if spec == "" {
		spec = `"sessionName":"s","kind":"BackgroundToolOp"`
	}
	return fmt.Sprintf(`{"apiVersion":"ops.meerkat.dev/v1alpha1","kind":"Operation","metadata":{"name":"op","namespace":"ns"},"spec":{%s},"status":{%s}}`, spec, status)
}

func sessionJSON(spec string) string {
	return fmt.Sprintf(`{"apiVersion":"ops.meerkat.dev/v1alpha1","kind":"OpsSession","metadata":{"name":"s","namespace":"ns"},"spec":{%s}}`, spec)
}

func micro(s string) *metav1.MicroTime {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &metav1.MicroTime{Time: t.Local()}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// badDuration is a duration a person might write that time.ParseDuration
// (and so metav1.Duration) refuses.
const badDuration = "5 minutes"

// TestLenientDecode: a value the Go types cannot decode no longer fails the
// object (nor a list, nor a watch event): it is read leniently or dropped,
// and recorded in Malformed; everything else decodes as before.
func TestLenientDecode(t *testing.T) {
	dec, watchDec := testCodecs(t)
	good := `"phase":"Running","progress":{"count":3},"conditions":[{"type":"Ready","status":"True","reason":"Running","message":"","lastTransitionTime":"2024-01-01T00:00:00Z"}]`
	cases := []struct {
		name string
		json string
		// poison: the value the stock types fail on; "" for inputs they decode.
		poison string
		check  func(t *testing.T, obj runtime.Object)
	}{
		{
			name: "valid operation", json: opJSON(`"sessionName":"s","kind":"MobMemberChild","displayName":"d","heartbeatTimeout":"1h30m","provisioningTimeout":"1.5µs"`,
				good+`,"createdAt":"2024-02-29T23:59:59.123456Z","startedAt":"2024-01-01T01:00:00.000001+02:00","completedAt":null`),
			check: func(t *testing.T, obj runtime.Object) {
				op := obj.(*Operation)
				expectOp(t, op, OperationSpec{SessionName: "s", Kind: MobMemberChild, DisplayName: "d", HeartbeatTimeout: dur(90 * time.Minute), ProvisioningTimeout: dur(1500 * time.Nanosecond)}, nil, nil)
				expectTime(t, "createdAt", op.Status.CreatedAt, micro("2024-02-29T23:59:59.123456Z"))
				expectTime(t, "startedAt", op.Status.StartedAt, micro("2023-12-31T23:00:00.000001Z"))
				expectTime(t, "completedAt", op.Status.CompletedAt, nil)
				if op.Status.Phase != PhaseRunning || op.Status.Progress.Count != 3 || len(op.Status.Conditions) != 1 {
					t.Errorf("status decoded wrongly: %+v", op.Status)
				}
			},
		},
		{
			name: "field names are case-sensitive, as before", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","DisplayName":"x","HeartbeatTimeout":"abc"`, `"StartedAt":"x"`),
			check: func(t *testing.T, obj runtime.Object) {
				expectOp(t, obj.(*Operation), OperationSpec{SessionName: "s", Kind: BackgroundToolOp}, nil, nil)
			},
		},
		{name: "heartbeatTimeout abc", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","heartbeatTimeout":"abc"`, ""), poison: "abc",
			check: specMalformed(`spec.heartbeatTimeout: "abc": invalid duration`)},
		{name: "provisioningTimeout 5 minutes", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","provisioningTimeout":"5 minutes"`, ""), poison: badDuration,
			check: specMalformed(`spec.provisioningTimeout: "5 minutes": invalid duration`)},
		{name: "provisioningTimeout overflows", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","provisioningTimeout":"9999999999h"`, ""), poison: "9999999999h",
			check: specMalformed(`spec.provisioningTimeout: "9999999999h": invalid duration`)},
		{name: "negative heartbeatTimeout", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","heartbeatTimeout":"-5s","provisioningTimeout":"0s"`, ""),
			check: specMalformed(`spec.provisioningTimeout: "0s": not a positive duration`, `spec.heartbeatTimeout: "-5s": not a positive duration`)},
		{name: "heartbeatTimeout a number", json: opJSON(`"sessionName":"s","kind":"BackgroundToolOp","heartbeatTimeout":5`, ""), poison: "5",
			check: specMalformed(`spec.heartbeatTimeout: 5: not a string`)},
		{name: "startedAt without fraction", json: opJSON("", `"phase":"Running","startedAt":"2024-01-01T00:00:00Z"`), poison: "2024-01-01T00:00:00Z",
			check: func(t *testing.T, obj runtime.Object) {
				op := obj.(*Operation)
				expectOp(t, op, OperationSpec{SessionName: "s", Kind: BackgroundToolOp}, nil,
					[]string{`status.startedAt: "2024-01-01T00:00:00Z": not a timestamp with six fractional digits, read as 2024-01-01T00:00:00.000000Z`})
				expectTime(t, "startedAt", op.Status.StartedAt, micro("2024-01-01T00:00:00Z"))
				if op.Status.Phase != PhaseRunning {
					t.Errorf("phase %q", op.Status.Phase)
				}
			},
		},
		{name: "createdAt with nine fractional digits", json: opJSON("", `"createdAt":"2024-01-01T00:00:00.123456789Z","admittedAt":"2024-01-01T00:00:01.5+01:00"`), poison: "2024-01-01T00:00:00.123456789Z",
			check: func(t *testing.T, obj runtime.Object) {
				op := obj.(*Operation)
				expectOp(t, op, OperationSpec{SessionName: "s", Kind: BackgroundToolOp}, nil, []string{
					`status.createdAt: "2024-01-01T00:00:00.123456789Z": not a timestamp with six fractional digits, read as 2024-01-01T00:00:00.123456Z`,
					`status.admittedAt: "2024-01-01T00:00:01.5+01:00": not a timestamp with six fractional digits, read as 2023-12-31T23:00:01.500000Z`,
				})
				expectTime(t, "createdAt", op.Status.CreatedAt, micro("2024-01-01T00:00:00.123456Z"))
				expectTime(t, "admittedAt", op.Status.AdmittedAt, micro("2023-12-31T23:00:01.5Z"))
			},
		},
		{name: "lower-case t and z, comma", json: opJSON("", `"lastHeartbeatTime":"2024-01-01t00:00:00,25z"`), poison: "2024-01-01t00:00:00,25z",
			check: func(t *testing.T, obj runtime.Object) {
				op := obj.(*Operation)
				expectTime(t, "lastHeartbeatTime", op.Status.LastHeartbeatTime, micro("2024-01-01T00:00:00.25Z"))
				if len(op.Status.Malformed) != 1 || !strings.HasPrefix(op.Status.Malformed[0], "status.lastHeartbeatTime: ") {
					t.Errorf("Malformed = %q", op.Status.Malformed)
				}
			},
		},
		{name: "unreadable completedAt", json: opJSON("", `"completedAt":"2024-01-01T00:00:00ZTgarbage"`), poison: "2024-01-01T00:00:00ZTgarbage",
			check: func(t *testing.T, obj runtime.Object) {
				op := obj.(*Operation)
				expectOp(t, op, OperationSpec{SessionName: "s", Kind: BackgroundToolOp}, nil, []string{`status.completedAt: "2024-01-01T00:00:00ZTgarbage": invalid timestamp, ignored`})
				expectTime(t, "completedAt", op.Status.CompletedAt, nil)
			},
		},
		{name: "session defaults", json: sessionJSON(`"maxConcurrent":2,"provisioningTimeout":"5 minutes","heartbeatTimeout":"-5s"`), poison: badDuration,
			check: func(t *testing.T, obj runtime.Object) {
				s := obj.(*OpsSession)
				if s.Spec.MaxConcurrent == nil || *s.Spec.MaxConcurrent != 2 || s.Spec.ProvisioningTimeout != nil || s.Spec.HeartbeatTimeout != nil {
					t.Errorf("spec decoded wrongly: %+v", s.Spec)
				}
				expectStrings(t, "spec.Malformed", s.Spec.Malformed, []string{`spec.provisioningTimeout: "5 minutes": invalid duration`, `spec.heartbeatTimeout: "-5s": not a positive duration`})
			},
		},
		{name: "valid session", json: sessionJSON(`"heartbeatTimeout":"30s","provisioningTimeout":null`),
			check: func(t *testing.T, obj runtime.Object) {
				s := obj.(*OpsSession)
				if s.Spec.HeartbeatTimeout == nil || s.Spec.HeartbeatTimeout.Duration != 30*time.Second || s.Spec.ProvisioningTimeout != nil || s.Spec.Malformed != nil {
					t.Errorf("spec decoded wrongly: %+v", s.Spec)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.poison != "" {
				expectPoison(t, tc.poison)
			}
			t.Run("object", func(t *testing.T) {
				obj, _, err := dec.Decode([]byte(tc.json), nil, nil)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				tc.check(t, obj)
				roundTrip(t, dec, obj)
			})
			t.Run("list", func(t *testing.T) { checkListDecode(t, dec, tc.json, tc.check) })
			t.Run("watch", func(t *testing.T) { checkWatchDecode(t, watchDec, tc.json, tc.check) })
		})
	}
}

// expectPoison: the stock types fail on poison, so an input holding it used
// to halt a client.
func expectPoison(t *testing.T, poison string) {
	t.Helper()
	raw, _ := json.Marshal(poison)
	if poison == "5" {
		raw = []byte("5")
	}
	if (&metav1.MicroTime{}).UnmarshalJSON(raw) == nil || (&metav1.Duration{}).UnmarshalJSON(raw) == nil {
		t.Fatalf("%s is not poison for the stock types", poison)
	}
}

// checkListDecode decodes a list of two copies of the object in objJSON and
// checks the second.
func checkListDecode(t *testing.T, dec runtime.Decoder, objJSON string, check func(*testing.T, runtime.Object)) {
	t.Helper()
	kind := "OperationList"
	if strings.Contains(objJSON, `"kind":"OpsSession"`) {
		kind = "OpsSessionList"
	}
	list := fmt.Sprintf(`{"apiVersion":"ops.meerkat.dev/v1alpha1","kind":%q,"metadata":{"resourceVersion":"7"},"items":[%s,%s]}`, kind, objJSON, objJSON)
	obj, _, err := dec.Decode([]byte(list), nil, nil)
	if err != nil {
		t.Fatalf("decode list: %v", err)
	}
	switch l := obj.(type) {
	case *OperationList:
		if len(l.Items) != 2 {
			t.Fatalf("%d items", len(l.Items))
		}
		check(t, &l.Items[1])
	case *OpsSessionList:
		if len(l.Items) != 2 {
			t.Fatalf("%d items", len(l.Items))
		}
		check(t, &l.Items[1])
	default:
		t.Fatalf("decoded a %T", obj)
	}
}

// checkWatchDecode decodes an ADDED and a MODIFIED watch event of the
// object in objJSON and checks both.
func checkWatchDecode(t *testing.T, watchDec func(io.ReadCloser) *restclientwatch.Decoder, objJSON string, check func(*testing.T, runtime.Object)) {
	t.Helper()
	var stream bytes.Buffer
	for _, typ := range []string{"ADDED", "MODIFIED"} {
		fmt.Fprintf(&stream, `{"type":%q,"object":%s}`+"\n", typ, objJSON)
	}
	d := watchDec(io.NopCloser(&stream))
	for _, want := range []watch.EventType{watch.Added, watch.Modified} {
		typ, obj, err := d.Decode()
		if err != nil {
			t.Fatalf("decode watch event: %v", err)
		}
		if typ != want {
			t.Fatalf("event %s, want %s", typ, want)
		}
		check(t, obj)
	}
}

func specMalformed(want ...string) func(*testing.T, runtime.Object) {
	return func(t *testing.T, obj runtime.Object) {
		expectOp(t, obj.(*Operation), OperationSpec{SessionName: "s", Kind: BackgroundToolOp}, want, nil)
	}
}

// expectOp compares the spec (Malformed aside) and both Malformed lists.
func expectOp(t *testing.T, op *Operation, spec OperationSpec, specBad, statusBad []string) {
	t.Helper()
	got := op.Spec
	got.Malformed = nil
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(spec)
	if !bytes.Equal(gj, wj) {
		t.Errorf("spec = %s, want %s", gj, wj)
	}
	expectStrings(t, "spec.Malformed", op.Spec.Malformed, specBad)
	expectStrings(t, "status.Malformed", op.Status.Malformed, statusBad)
}

func expectStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") || (got == nil) != (want == nil) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func expectTime(t *testing.T, what string, got, want *metav1.MicroTime) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil || !got.Time.Equal(want.Time):
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// roundTrip: what a lenient decode produced encodes to values the schema
// accepts, without Malformed, and decodes back to the same values.
func roundTrip(t *testing.T, dec runtime.Decoder, obj runtime.Object) {
	t.Helper()
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("alformed")) {
		t.Errorf("Malformed was serialised: %s", out)
	}
	re := regexp.MustCompile(MicroTimePattern)
	var m struct {
		Status map[string]any `json:"status"`
	}
	_ = json.Unmarshal(out, &m)
	for _, f := range []string{"createdAt", "admittedAt", "startedAt", "completedAt", "lastHeartbeatTime"} {
		if s, ok := m.Status[f].(string); ok && !re.MatchString(s) {
			t.Errorf("status.%s encodes as %q, which the schema refuses", f, s)
		}
	}
	kind := "Operation"
	if _, ok := obj.(*OpsSession); ok {
		kind = "OpsSession"
	}
	gvk := GroupVersion.WithKind(kind)
	again, _, err := dec.Decode(out, &gvk, nil)
	if err != nil {
		t.Fatalf("decode again: %v", err)
	}
	if out2, err := json.Marshal(again); err != nil || !bytes.Equal(out, out2) {
		t.Errorf("decoded back to other values (%v):\n%s\nthen\n%s", err, out, out2)
	}
	switch o := again.(type) {
	case *Operation:
		if o.Spec.Malformed != nil || o.Status.Malformed != nil {
			t.Errorf("re-encoded object still malformed: %q %q", o.Spec.Malformed, o.Status.Malformed)
		}
	case *OpsSession:
		if o.Spec.Malformed != nil {
			t.Errorf("re-encoded session still malformed: %q", o.Spec.Malformed)
		}
	}
}

// TestDeepCopyMalformed: the generated deepcopy copies Malformed, not shares it.
func TestDeepCopyMalformed(t *testing.T) {
	op := &Operation{Spec: OperationSpec{Malformed: []string{"a"}}, Status: OperationStatus{Malformed: []string{"b"}}}
	cp := op.DeepCopy()
	cp.Spec.Malformed[0], cp.Status.Malformed[0] = "x", "y"
	if op.Spec.Malformed[0] != "a" || op.Status.Malformed[0] != "b" {
		t.Errorf("deepcopy shares Malformed")
	}
	s := &OpsSession{Spec: OpsSessionSpec{Malformed: []string{"a"}}}
	cs := s.DeepCopy()
	cs.Spec.Malformed[0] = "x"
	if s.Spec.Malformed[0] != "a" || len(cs.Spec.Malformed) != 1 {
		t.Errorf("deepcopy of the session spec shares Malformed")
	}
}

// crdSchema reads the generated CRD's schema for one version.
func crdSchema(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", file))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

func property(t *testing.T, schema map[string]any, path ...string) map[string]any {
	t.Helper()
	for _, p := range path {
		props, _ := schema["properties"].(map[string]any)
		next, ok := props[p].(map[string]any)
		if !ok {
			t.Fatalf("no property %s in the CRD", strings.Join(path, "."))
		}
		schema = next
	}
	return schema
}

// TestMicroTimePattern: the CRD's pattern for every status timestamp is
// MicroTimePattern, and it matches exactly the strings
// metav1.MicroTime.UnmarshalJSON accepts, including what MarshalJSON writes.
func TestMicroTimePattern(t *testing.T) {
	schema := crdSchema(t, "ops.meerkat.dev_operations.yaml")
	for _, f := range []string{"createdAt", "admittedAt", "startedAt", "completedAt", "lastHeartbeatTime"} {
		if p := property(t, schema, "status", f)["pattern"]; p != MicroTimePattern {
			t.Errorf("status.%s pattern = %v, want MicroTimePattern", f, p)
		}
	}
	re := regexp.MustCompile(MicroTimePattern)
	decodes := func(s string) bool {
		raw, _ := json.Marshal(s)
		return (&metav1.MicroTime{}).UnmarshalJSON(raw) == nil
	}
	check := func(s string) {
		if got, want := re.MatchString(s), decodes(s); got != want {
			t.Errorf("%q: pattern matches %v, MicroTime decodes %v", s, got, want)
		}
	}
	seeds := []string{
		"2024-01-01T00:00:00.000000Z", "2024-02-29T23:59:59.999999+24:60", "2023-02-28T9:05:07,123456-05:30",
		"2000-02-29T00:00:00.+12345Z", "1900-02-28T00:00:00.-00000Z", "0000-02-29T00:00:00.000000Z",
		"2024-12-31T23:59:59.999999-00:00", "2023-04-30T1:00:00.000000+00:00", "2024-01-01T00:00:00Z",
		"2024-01-01T00:00:00.123456789Z", "1600-02-29T12:00:00.000000Z", "2100-02-28T12:00:00.000000Z",
	}
	for _, s := range seeds {
		check(s)
	}
	// Every single-character substitution, deletion and insertion of the
	// seeds, from an alphabet of the characters that matter.
	alphabet := "0123456789+-.,:TtZz x"
	for _, s := range seeds {
		for i := 0; i <= len(s); i++ {
			if i < len(s) {
				check(s[:i] + s[i+1:])
			}
			for _, c := range alphabet {
				check(s[:i] + string(c) + s[i:])
				if i < len(s) {
					check(s[:i] + string(c) + s[i+1:])
				}
			}
		}
	}
	// Random dates, times and zones, and random multi-digit mutations.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		s := fmt.Sprintf("%04d-%02d-%02dT%0*d:%02d:%02d%c%06d%s", rng.IntN(10000), rng.IntN(14), rng.IntN(33), 1+rng.IntN(2), rng.IntN(26), rng.IntN(62), rng.IntN(62),
			".,"[rng.IntN(2)], rng.IntN(1000000), []string{"Z", "+01:00", "-24:60", "+25:00", "+24:61", "z", "+0100"}[rng.IntN(7)])
		b := []byte(s)
		for range rng.IntN(3) {
			b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
		}
		check(string(b))
	}
	// MarshalJSON output always matches.
	for range 20000 {
		tm := time.Unix(rng.Int64N(253402300799+62135596800)-62135596800, rng.Int64N(1e9)).In(time.FixedZone("", (rng.IntN(49)-24)*1800))
		raw, err := metav1.NewMicroTime(tm).MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var s string
		_ = json.Unmarshal(raw, &s)
		if !re.MatchString(s) || !decodes(s) {
			t.Fatalf("MarshalJSON wrote %s, which the pattern refuses", raw)
		}
	}
}

// TestDurationRule: the CRD's rule for every duration is DurationPattern
// guarding duration(self) > 0; whatever it matches time.ParseDuration parses
// (so the rule cannot fail with a CEL conversion error), the values
// time.Duration.String writes below 1000000h match, and the poison values
// do not.
func TestDurationRule(t *testing.T) {
	wantRule := "self.matches('[0-9]') && self.matches('" + DurationPattern + "') && duration(self) > duration('0s')"
	fields := []struct{ file, field string }{
		{"ops.meerkat.dev_operations.yaml", "provisioningTimeout"}, {"ops.meerkat.dev_operations.yaml", "heartbeatTimeout"},
		{"ops.meerkat.dev_opssessions.yaml", "provisioningTimeout"}, {"ops.meerkat.dev_opssessions.yaml", "heartbeatTimeout"},
	}
	for _, f := range fields {
		p := property(t, crdSchema(t, f.file), "spec", f.field)
		rules, _ := p["x-kubernetes-validations"].([]any)
		if len(rules) != 1 || rules[0].(map[string]any)["rule"] != wantRule {
			t.Errorf("%s spec.%s rules = %v", f.file, f.field, rules)
		} else if msg, _ := rules[0].(map[string]any)["messageExpression"].(string); !strings.Contains(msg, "spec."+f.field) {
			t.Errorf("%s spec.%s message does not name the field: %s", f.file, f.field, msg)
		}
		if p["maxLength"] != float64(64) {
			t.Errorf("%s spec.%s maxLength = %v", f.file, f.field, p["maxLength"])
		}
	}
	re := regexp.MustCompile(DurationPattern)
	digit := regexp.MustCompile(`[0-9]`)
	accepts := func(s string) bool {
		if len(s) > 64 || !digit.MatchString(s) || !re.MatchString(s) {
			return false
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%q matches the pattern but time.ParseDuration fails: %v", s, err)
		}
		return d > 0
	}
	for _, s := range []string{"abc", badDuration, "9999999999h", "-5s", "0s", "0", "", "+", ".", "1h1h", "1000000h", "99999999m", "1s1h", "1.5 h", "1H"} {
		if accepts(s) {
			t.Errorf("%q accepted", s)
		}
	}
	for _, s := range []string{"30s", "1h30m", "1.5h", ".5s", "5.s", "+5m", "500ms", "1µs", "1μs", "1us", "100ns", "999999h9999999m999999999s999999999999ms", "2562047h47m16.854775807s"[1:]} {
		if !accepts(s) {
			t.Errorf("%q refused", s)
		}
	}
	// The largest value each unit allows, all together, does not overflow.
	largest := "999999.9h9999999.9m999999999.9s999999999999.9ms999999999999999.9us999999999999999999.9ns"
	if !re.MatchString(largest) {
		t.Fatalf("%q does not match", largest)
	}
	if _, err := time.ParseDuration(largest); err != nil {
		t.Errorf("%q: %v", largest, err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	units := []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second, time.Minute, time.Hour}
	for range 100000 {
		d := time.Duration(rng.Int64N(1000000)) * units[rng.IntN(len(units))]
		d += time.Duration(rng.Int64N(int64(time.Hour)))
		if d >= 1000000*time.Hour || d <= 0 {
			continue
		}
		if s := d.String(); !accepts(s) {
			t.Fatalf("time.Duration.String wrote %q, which the rule refuses", s)
		}
	}
	// Random strings over the duration alphabet: nothing matching fails to parse.
	alphabet := []string{"0", "1", "9", ".", "+", "-", "h", "m", "s", "ms", "us", "µs", "ns", "99999", " "}
	for range 200000 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		accepts(b.String())
	}
}
