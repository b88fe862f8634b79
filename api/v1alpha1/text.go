package v1alpha1

import "unicode/utf8"

// Truncate keeps s within n bytes, ending in "..." when cut, without
// splitting a UTF-8 character. Condition messages, event notes and the
// reports of malformed values have byte limits; this is the one place that
// cuts them (the lowest floor that needs it, so pkg/lifecycle, the
// controllers and pkg/opsclient all call it).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
