package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// A value the Go types cannot decode must not halt a client: one such object
// in a list would fail the whole list, and an informer that cannot list stops
// serving every object of the kind. The CRD refuses those values (see
// MicroTimePattern and DurationPattern), but an object stored before that, or
// written by a newer version, may still carry one. So the spec and status
// types decode their duration and timestamp fields themselves, leniently: a
// timestamp in any RFC 3339 form is read (truncated to microseconds), an
// unusable value is dropped (treated as unset), and each problem is recorded
// in the type's Malformed field (never serialised) for the controller to
// report. Every other field decodes exactly as before.

// MicroTimePattern matches exactly the strings metav1.MicroTime.UnmarshalJSON
// accepts: time.Parse with layout "2006-01-02T15:04:05.000000Z07:00". That is
// a real calendar date (leap years included), an hour of one or two digits,
// exactly six fractional digits after "." or "," (time.Parse also takes a
// sign followed by five digits there, a non-negative one), and "Z" or an
// offset of at most 24:60. MicroTime.MarshalJSON output always matches. The
// CRD carries it as the Pattern of every status timestamp; decode_test.go
// checks the CRD against this constant and the constant against time.Parse.
const MicroTimePattern = `^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01]?[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.,](?:[0-9]{6}|[+][0-9]{5}|-00000)(?:Z|[+-](?:[01][0-9]|2[0-4]):(?:[0-5][0-9]|60))$`

// DurationPattern is the duration syntax the CRD accepts: the units h, m, s,
// ms, us (or µs, μs) and ns, each at most once and in that order, every
// number with at most 6, 7, 9, 12, 15 and 18 integer digits respectively,
// as time.Duration.String writes them below 1000000h. Whatever it matches
// (with at least one digit) time.ParseDuration parses without overflow: the
// largest sum is below 8.3e18ns, and 2^63ns is 9.2e18. The CRD's rule is
// this match guarding duration(self) > duration('0s'), so a CEL conversion
// error (which would replace the rule's message) cannot happen.
const DurationPattern = `^[+]?(?:(?:[0-9]{1,6}(?:[.][0-9]*)?|[.][0-9]+)h)?(?:(?:[0-9]{1,7}(?:[.][0-9]*)?|[.][0-9]+)m)?(?:(?:[0-9]{1,9}(?:[.][0-9]*)?|[.][0-9]+)s)?(?:(?:[0-9]{1,12}(?:[.][0-9]*)?|[.][0-9]+)ms)?(?:(?:[0-9]{1,15}(?:[.][0-9]*)?|[.][0-9]+)(?:us|µs|μs))?(?:(?:[0-9]{1,18}(?:[.][0-9]*)?|[.][0-9]+)ns)?$`

// UnmarshalJSON decodes an OperationSpec; an unusable timeout is dropped and
// recorded in Malformed.
func (s *OperationSpec) UnmarshalJSON(b []byte) error {
	type plain OperationSpec
	w := struct {
		*plain
		ProvisioningTimeout json.RawMessage `json:"provisioningTimeout,omitempty"`
		HeartbeatTimeout    json.RawMessage `json:"heartbeatTimeout,omitempty"`
	}{plain: (*plain)(s)}
	s.Malformed = nil
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &w); err != nil {
		return err
	}
	s.Malformed = decodeDuration(w.ProvisioningTimeout, &s.ProvisioningTimeout, "spec.provisioningTimeout", s.Malformed)
	s.Malformed = decodeDuration(w.HeartbeatTimeout, &s.HeartbeatTimeout, "spec.heartbeatTimeout", s.Malformed)
	return nil
}

// UnmarshalJSON decodes an OpsSessionSpec; an unusable default timeout is
// dropped and recorded in Malformed.
func (s *OpsSessionSpec) UnmarshalJSON(b []byte) error {
	type plain OpsSessionSpec
	w := struct {
		*plain
		ProvisioningTimeout json.RawMessage `json:"provisioningTimeout,omitempty"`
		HeartbeatTimeout    json.RawMessage `json:"heartbeatTimeout,omitempty"`
	}{plain: (*plain)(s)}
	s.Malformed = nil
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &w); err != nil {
		return err
	}
	s.Malformed = decodeDuration(w.ProvisioningTimeout, &s.ProvisioningTimeout, "spec.provisioningTimeout", s.Malformed)
	s.Malformed = decodeDuration(w.HeartbeatTimeout, &s.HeartbeatTimeout, "spec.heartbeatTimeout", s.Malformed)
	return nil
}

// UnmarshalJSON decodes an OperationStatus; a timestamp in another RFC 3339
// form is read anyway and an unreadable one dropped, both recorded in
// Malformed.
func (s *OperationStatus) UnmarshalJSON(b []byte) error {
	type plain OperationStatus
	w := struct {
		*plain
		CreatedAt         json.RawMessage `json:"createdAt,omitempty"`
		AdmittedAt        json.RawMessage `json:"admittedAt,omitempty"`
		StartedAt         json.RawMessage `json:"startedAt,omitempty"`
		CompletedAt       json.RawMessage `json:"completedAt,omitempty"`
		LastHeartbeatTime json.RawMessage `json:"lastHeartbeatTime,omitempty"`
	}{plain: (*plain)(s)}
	s.Malformed = nil
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &w); err != nil {
		return err
	}
	s.Malformed = decodeMicroTime(w.CreatedAt, &s.CreatedAt, "status.createdAt", s.Malformed)
	s.Malformed = decodeMicroTime(w.AdmittedAt, &s.AdmittedAt, "status.admittedAt", s.Malformed)
	s.Malformed = decodeMicroTime(w.StartedAt, &s.StartedAt, "status.startedAt", s.Malformed)
	s.Malformed = decodeMicroTime(w.CompletedAt, &s.CompletedAt, "status.completedAt", s.Malformed)
	s.Malformed = decodeMicroTime(w.LastHeartbeatTime, &s.LastHeartbeatTime, "status.lastHeartbeatTime", s.Malformed)
	return nil
}

// decodeDuration sets *dst from raw: absent keeps *dst, null clears it, a
// positive Go duration sets it, and anything else clears it and adds a
// problem to malformed.
func decodeDuration(raw json.RawMessage, dst **metav1.Duration, field string, malformed []string) []string {
	if raw == nil {
		return malformed
	}
	*dst = nil
	if string(raw) == "null" {
		return malformed
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return append(malformed, fmt.Sprintf("%s: %s: not a string", field, clip(string(raw))))
	}
	d, err := time.ParseDuration(str)
	switch {
	case err != nil:
		return append(malformed, fmt.Sprintf("%s: %s: invalid duration", field, quote(str)))
	case d <= 0:
		return append(malformed, fmt.Sprintf("%s: %s: not a positive duration", field, quote(str)))
	}
	*dst = &metav1.Duration{Duration: d}
	return malformed
}

// decodeMicroTime sets *dst from raw: absent keeps *dst, null clears it, and
// a string metav1.MicroTime decodes sets it. Otherwise an RFC 3339 time with
// any number of fractional digits (or "," for ".", or lower-case t and z) is
// read, truncated to microseconds, and anything else clears *dst; both add a
// problem to malformed.
func decodeMicroTime(raw json.RawMessage, dst **metav1.MicroTime, field string, malformed []string) []string {
	if raw == nil {
		return malformed
	}
	*dst = nil
	if string(raw) == "null" {
		return malformed
	}
	var t metav1.MicroTime
	if err := t.UnmarshalJSON(raw); err == nil {
		*dst = &t
		return malformed
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return append(malformed, fmt.Sprintf("%s: %s: not a string", field, clip(string(raw))))
	}
	lenient, ok := parseLenientTime(str)
	if !ok {
		return append(malformed, fmt.Sprintf("%s: %s: invalid timestamp, ignored", field, quote(str)))
	}
	*dst = &metav1.MicroTime{Time: lenient}
	return append(malformed, fmt.Sprintf("%s: %s: not a timestamp with six fractional digits, read as %s",
		field, quote(str), lenient.UTC().Format(metav1.RFC3339Micro)))
}

// parseLenientTime reads an RFC 3339 time with any number of fractional
// digits, as the CRD's date-time format admitted before MicroTimePattern.
func parseLenientTime(s string) (time.Time, bool) {
	if len(s) > 64 {
		return time.Time{}, false
	}
	s = strings.Replace(strings.ToUpper(s), ",", ".", 1)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.Truncate(time.Microsecond).Local(), true
}

func quote(s string) string { return strconv.Quote(clip(s)) }

// clip keeps a reported value short: it goes into events and logs.
func clip(s string) string { return Truncate(s, 67) }
