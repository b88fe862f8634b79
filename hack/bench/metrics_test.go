package main

import (
	"maps"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := strings.Join([]string{
		"# HELP rest_client_requests_total Number of HTTP requests.",
		"# TYPE rest_client_requests_total counter",
		`rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PUT"} 12345`,
		`rest_client_requests_total{code="409",method="PUT",} 3 1700000000000`,
		"workqueue_depth 7",
		"",
		// Blanks may be tabs, and may come before the labels.
		"go_goroutines\t42",
		`process_open_fds {pid="1"} 9`,
		// Escapes in label values.
		`escaped{v="a\"b\\c\nd"} 1e3`,
		// Not samples: skipped.
		"no_value",
		`{code="200"} 1`,
		`unclosed{code="200" 1`,
		`unquoted{code=200} 1`,
		"bad_value abc",
	}, "\n")
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []sample{
		{"rest_client_requests_total", map[string]string{"code": "200", "host": "127.0.0.1:6443", "method": "PUT"}, 12345},
		{"rest_client_requests_total", map[string]string{"code": "409", "method": "PUT"}, 3},
		{"workqueue_depth", map[string]string{}, 7},
		{"go_goroutines", map[string]string{}, 42},
		{"process_open_fds", map[string]string{"pid": "1"}, 9},
		{"escaped", map[string]string{"v": "a\"b\\c\nd"}, 1000},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d samples %+v; want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].name != want[i].name || got[i].value != want[i].value || !maps.Equal(got[i].labels, want[i].labels) {
			t.Errorf("sample %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	cr := managerRequests(got)
	if cr.ByMethod["PUT"] != 12348 || cr.Conflicts != 3 || cr.writes() != 12348 {
		t.Errorf("managerRequests = %+v", cr)
	}
}
