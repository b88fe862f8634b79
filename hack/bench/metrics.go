package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one Prometheus sample from a text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads the manager's /metrics endpoint.
func (m *managerProc) scrape(ctx context.Context) ([]sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	// Only read: a failed Close loses nothing parseMetrics did not see.
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the samples of a Prometheus text exposition; comments
// and lines that are not a sample are skipped.
func parseMetrics(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if s, ok := parseSample(line); ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseSample parses one sample line: the metric name, its labels in braces
// if any, then the value (and a timestamp, ignored), the tokens separated
// by blanks (spaces or tabs). ok is false for anything else.
func parseSample(line string) (s sample, ok bool) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return sample{}, false // no name, or nothing after it
	}
	s = sample{name: line[:end], labels: map[string]string{}}
	rest := strings.TrimLeft(line[end:], " \t")
	if strings.HasPrefix(rest, "{") {
		if rest, ok = parseLabels(rest[1:], s.labels); !ok {
			return sample{}, false
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return sample{}, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return sample{}, false
	}
	s.value = v
	return s, true
}

// parseLabels reads the label pairs after a sample's opening brace into
// labels, and returns what follows the closing brace. ok is false when the
// label set is malformed or not closed.
func parseLabels(in string, labels map[string]string) (rest string, ok bool) {
	for {
		in = strings.TrimLeft(in, ", \t")
		if strings.HasPrefix(in, "}") {
			return in[1:], true
		}
		eq := strings.IndexByte(in, '=')
		if eq < 0 {
			return "", false
		}
		key := strings.TrimSpace(in[:eq])
		in = strings.TrimLeft(in[eq+1:], " \t")
		if !strings.HasPrefix(in, `"`) {
			return "", false
		}
		val, n, closed := labelValue(in[1:])
		if !closed {
			return "", false
		}
		labels[key] = val
		in = in[1+n:]
	}
}

// labelValue reads a quoted label value after its opening quote, undoing
// the format's escapes (\\, \" and \n), and returns it with the number of
// bytes read, closing quote included. ok is false when it is not closed.
func labelValue(in string) (val string, n int, ok bool) {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		switch c := in[i]; {
		case c == '"':
			return b.String(), i + 1, true
		case c == '\\' && i+1 < len(in):
			i++
			if in[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(in[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// clientRequests is the manager's client-go request count, from
// rest_client_requests_total, by method, with the 409s.
type clientRequests struct {
	ByMethod  map[string]float64
	Conflicts float64
}

func managerRequests(ss []sample) clientRequests {
	cr := clientRequests{ByMethod: map[string]float64{}}
	for _, s := range ss {
		if s.name != "rest_client_requests_total" {
			continue
		}
		cr.ByMethod[s.labels["method"]] += s.value
		if s.labels["code"] == "409" {
			cr.Conflicts += s.value
		}
	}
	return cr
}

func (c clientRequests) writes() float64 {
	return c.ByMethod["POST"] + c.ByMethod["PUT"] + c.ByMethod["PATCH"] + c.ByMethod["DELETE"]
}

func (c clientRequests) sub(o clientRequests) clientRequests {
	d := clientRequests{ByMethod: map[string]float64{}, Conflicts: c.Conflicts - o.Conflicts}
	for k, v := range c.ByMethod {
		d.ByMethod[k] = v - o.ByMethod[k]
	}
	return d
}

// gauge sums the samples of a metric whose labels include match.
func gauge(ss []sample, name string, match map[string]string) float64 {
	var v float64
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for k, want := range match {
			if s.labels[k] != want {
				continue next
			}
		}
		v += s.value
	}
	return v
}

// requestCounter wraps a client's transport and counts its requests.
type requestCounter struct {
	post, put, patch, del, get, watch, conflicts atomic.Int64

	mu       sync.Mutex
	writeRTT []time.Duration // each write's round trip, until takeWriteRTTs
}

// takeWriteRTTs returns the write round trips recorded since the last call.
func (rc *requestCounter) takeWriteRTTs() []time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.writeRTT
	rc.writeRTT = nil
	return out
}

type requestCounts struct {
	Post, Put, Patch, Delete, Get, Watch, Conflicts int64
}

func (c requestCounts) writes() int64 { return c.Post + c.Put + c.Patch + c.Delete }

func (c requestCounts) sub(o requestCounts) requestCounts {
	return requestCounts{c.Post - o.Post, c.Put - o.Put, c.Patch - o.Patch, c.Delete - o.Delete,
		c.Get - o.Get, c.Watch - o.Watch, c.Conflicts - o.Conflicts}
}

func (rc *requestCounter) snapshot() requestCounts {
	return requestCounts{rc.post.Load(), rc.put.Load(), rc.patch.Load(), rc.del.Load(),
		rc.get.Load(), rc.watch.Load(), rc.conflicts.Load()}
}

func (rc *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost:
			rc.post.Add(1)
		case http.MethodPut:
			rc.put.Add(1)
		case http.MethodPatch:
			rc.patch.Add(1)
		case http.MethodDelete:
			rc.del.Add(1)
		case http.MethodGet:
			if req.URL.Query().Get("watch") == "true" {
				rc.watch.Add(1)
			} else {
				rc.get.Add(1)
			}
		}
		if slot, ok := req.Context().Value(sentKey{}).(*atomic.Int64); ok && req.Method != http.MethodGet {
			slot.Store(time.Now().UnixNano())
		}
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusConflict {
			rc.conflicts.Add(1)
		}
		if req.Method != http.MethodGet {
			rtt := time.Since(start)
			rc.mu.Lock()
			rc.writeRTT = append(rc.writeRTT, rtt)
			rc.mu.Unlock()
		}
		return resp, err
	})
}

// sentKey marks a request context whose writes' send times are recorded:
// the value is an *atomic.Int64 that receives the last write's UnixNano.
type sentKey struct{}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Latency summarises a set of durations, in milliseconds.
type Latency struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Latency{N: len(s), P50Ms: q(0.50), P90Ms: q(0.90), P99Ms: q(0.99), MaxMs: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
