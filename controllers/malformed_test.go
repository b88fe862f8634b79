package controllers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMalformedNoteFitsAnEvent: however many problems, the note fits an
// event and stays valid UTF-8.
func TestMalformedNoteFitsAnEvent(t *testing.T) {
	if got := malformedNote([]string{"a", "b"}); got != "ignored: a; b" {
		t.Errorf("short note = %q", got)
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = `spec.heartbeatTimeout: "` + strings.Repeat("é", 20) + `": invalid duration`
	}
	got := malformedNote(many)
	if len(got) > maxNote || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("long note: %d bytes, suffix %q, valid UTF-8 %v; want at most %d, ending in ...", len(got), got[len(got)-3:], utf8.ValidString(got), maxNote)
	}
}
