package v1alpha1

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateKeepsUTF8Whole(t *testing.T) {
	s := strings.Repeat("é", 600) // 1200 bytes
	got := Truncate(s, 1024)
	if len(got) > 1024 || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("Truncate = %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if Truncate("short", 1024) != "short" {
		t.Errorf("Truncate changed a short string")
	}
	if got := Truncate("abcdef", 5); got != "ab..." {
		t.Errorf(`Truncate("abcdef", 5) = %q, want "ab..."`, got)
	}
}
