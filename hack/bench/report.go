package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// HostInfo describes where and on what the run happened.
type HostInfo struct {
	Cores         int     `json:"cores"`
	Load1AtStart  float64 `json:"load1AtStart"`
	GoVersion     string  `json:"goVersion"`
	Commit        string  `json:"commit"`
	KubeAPIServer string  `json:"kubeAPIServer"`
	Etcd          string  `json:"etcd"`
}

// Results is everything one run (or the medians of several) measured.
type Results struct {
	Started     string          `json:"started"`
	Args        []string        `json:"args"`
	Host        HostInfo        `json:"host"`
	ManagerArgs []string        `json:"managerArgs"`
	Ceiling     []CeilingResult `json:"ceiling,omitempty"`
	// OperationCeiling is the ceiling measured with Operations (-ceiling-operation).
	OperationCeiling []CeilingResult `json:"operationCeiling,omitempty"`
	// LifecycleCeiling is the lifecycle's own write sequence sent back to
	// back, with no manager and no watchers (-ceiling-operation).
	LifecycleCeiling []CeilingResult   `json:"lifecycleCeiling,omitempty"`
	Lifecycles       []LifecycleResult `json:"lifecycles,omitempty"`
	HalfLoad         *LifecycleResult  `json:"halfLoad,omitempty"`
	Scale            *ScaleResults     `json:"scale,omitempty"`
	// MedianOf lists the files a -summarize result is the median of.
	MedianOf []string `json:"medianOf,omitempty"`
}

func printLifecycle(r LifecycleResult) {
	logf("lifecycles %s: %d in %.1fs = %.1f/s; admission p50 %.1f p99 %.1f ms; notification p50 %.1f p99 %.1f ms; agent write round trip p50 %.1f p99 %.1f ms; "+
		"writes/lifecycle %.2f agent + %.2f manager; %.0f writes/s = %.0f%% of ceiling; manager %.2f cores, peak RSS %.0f MiB",
		r.Name, r.Lifecycles, r.Seconds, r.LifecyclesPerSec, r.Admission.P50Ms, r.Admission.P99Ms,
		r.Notification.P50Ms, r.Notification.P99Ms, r.AgentWriteRTT.P50Ms, r.AgentWriteRTT.P99Ms, r.AgentWritesPerLifecycle, r.ManagerWritesPerLifecycle,
		r.WriteThroughput, 100*r.RatioToCeiling, r.ManagerCores, r.ManagerPeakRSSMiB)
}

// printTable prints the lifecycle phases (and the paced one) as a table on
// stdout, then printCeilings' table.
func printTable(res *Results) error {
	rows := slices.Clone(res.Lifecycles)
	if res.HalfLoad != nil {
		rows = append(rows, *res.HalfLoad)
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if _, err := fmt.Fprintln(tw, "phase\tC\tlifecycles/s\tadmit p50\tadmit p99\tnotify p50\tnotify p99\twrites/lc agent\tmanager\ttotal\twrites/s\tceiling\tratio\tmgr CPU ms/lc\tmgr cores\tmgr peak RSS MiB\tother load\tfailed\t"); err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f%%\t%.2f\t%.2f\t%.0f\t%.2f\t%d\t\n",
			r.Name, r.Concurrency, r.LifecyclesPerSec, r.Admission.P50Ms, r.Admission.P99Ms,
			r.Notification.P50Ms, r.Notification.P99Ms, r.AgentWritesPerLifecycle, r.ManagerWritesPerLifecycle,
			r.WritesPerLifecycle, r.WriteThroughput, r.CeilingWritesPerSec, 100*r.RatioToCeiling,
			r.ManagerCPUPerLifecycleMs, r.ManagerCores, r.ManagerPeakRSSMiB, r.OtherCores, r.Failed); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("(other load: cores used meanwhile by processes other than the bench, kube-apiserver, etcd and the manager;")
	fmt.Println(" latencies in ms; admission: Create to RegisterOperation returning, client-side; notification: CompleteOperation's write sent to the watcher's Wait returning)")
	fmt.Println()
	return printCeilings(res)
}

// printCeilings sets each sweep phase's write throughput against the three
// ceilings of the same C, when -ceiling-operation measured them all.
func printCeilings(res *Results) error {
	if len(res.LifecycleCeiling) == 0 {
		return nil
	}
	at := func(cs []CeilingResult, c int) float64 {
		for _, r := range cs {
			if r.Concurrency == c {
				return r.WritesPerSec
			}
		}
		return 0
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if _, err := fmt.Fprintln(tw, "C	lifecycle writes/s	trivial ceiling	ratio	Operation ceiling	ratio	lifecycle-writes ceiling	ratio	"); err != nil {
		return err
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*a/b)
	}
	for _, r := range res.Lifecycles {
		c := r.Concurrency
		t, o, l := at(res.Ceiling, c), at(res.OperationCeiling, c), at(res.LifecycleCeiling, c)
		if _, err := fmt.Fprintf(tw, "%d	%.0f	%.0f	%s	%.0f	%s	%.0f	%s	\n", c, r.WriteThroughput, t, ratio(r.WriteThroughput, t),
			o, ratio(r.WriteThroughput, o), l, ratio(r.WriteThroughput, l)); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("(the lifecycle-writes ceiling sends one lifecycle's own writes back to back, with no manager, no watches and no waiting)")
	fmt.Println()
	return nil
}

// writePlot draws lifecycles/s and the p99 latencies against C.
func writePlot(res *Results, path string) error {
	rows := res.Lifecycles
	if len(rows) == 0 {
		return fmt.Errorf("no lifecycle results to plot")
	}
	tput, ceil, lcCeil := make(plotter.XYs, len(rows)), make(plotter.XYs, 0, len(rows)), make(plotter.XYs, 0, len(rows))
	adm99, ntf99, adm50, ntf50 := make(plotter.XYs, len(rows)), make(plotter.XYs, len(rows)), make(plotter.XYs, len(rows)), make(plotter.XYs, len(rows))
	var ticks []plot.Tick
	for i, r := range rows {
		x := float64(r.Concurrency)
		ticks = append(ticks, plot.Tick{Value: x, Label: fmt.Sprint(r.Concurrency)})
		tput[i] = plotter.XY{X: x, Y: r.LifecyclesPerSec}
		if r.CeilingWritesPerSec > 0 && r.WritesPerLifecycle > 0 {
			ceil = append(ceil, plotter.XY{X: x, Y: r.CeilingWritesPerSec / r.WritesPerLifecycle})
		}
		for _, lc := range res.LifecycleCeiling {
			if lc.Concurrency == r.Concurrency && r.WritesPerLifecycle > 0 {
				lcCeil = append(lcCeil, plotter.XY{X: x, Y: lc.WritesPerSec / r.WritesPerLifecycle})
			}
		}
		adm99[i] = plotter.XY{X: x, Y: r.Admission.P99Ms}
		ntf99[i] = plotter.XY{X: x, Y: r.Notification.P99Ms}
		adm50[i] = plotter.XY{X: x, Y: r.Admission.P50Ms}
		ntf50[i] = plotter.XY{X: x, Y: r.Notification.P50Ms}
	}
	blue := color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange := color.RGBA{R: 255, G: 127, B: 14, A: 255}
	grey := color.RGBA{R: 120, G: 120, B: 120, A: 255}
	title := "ops-operator lifecycles"
	if len(res.MedianOf) > 0 {
		title += fmt.Sprintf(" (median of %d runs)", len(res.MedianOf))
	}
	r0 := rows[0]

	p1 := plot.New()
	p1.Title.Text = title
	p1.X.Label.Text = "agent goroutines (C)"
	p1.Y.Label.Text = "lifecycles/s"
	p1.Y.Min = 0
	if err := addLine(p1, "measured", tput, blue, false); err != nil {
		return err
	}
	if len(ceil) > 0 {
		if err := addLine(p1, "trivial ceiling ÷ writes per lifecycle", ceil, grey, true); err != nil {
			return err
		}
	}
	if len(lcCeil) > 0 {
		green := color.RGBA{R: 44, G: 160, B: 44, A: 255}
		if err := addLine(p1, "lifecycle-writes ceiling ÷ writes per lifecycle", lcCeil, green, true); err != nil {
			return err
		}
	}
	p1.Legend.Top, p1.Legend.Left = true, true
	top := 0.0
	for _, xy := range append(slices.Clone(tput), ceil...) {
		top = math.Max(top, xy.Y)
	}
	p1.Y.Max = top * 1.3

	p2 := plot.New()
	p2.Title.Text = fmt.Sprintf("latency (S=%d, k=%d, maxCompleted=%d)", r0.Sessions, r0.Progress, r0.MaxCompleted)
	p2.X.Label.Text = "agent goroutines (C)"
	p2.Y.Label.Text = "ms"
	p2.Y.Min = 0
	for _, l := range []struct {
		name   string
		xy     plotter.XYs
		c      color.Color
		dashed bool
	}{
		{"admission p99", adm99, blue, false}, {"notification p99", ntf99, orange, false},
		{"admission p50", adm50, blue, true}, {"notification p50", ntf50, orange, true},
	} {
		if err := addLine(p2, l.name, l.xy, l.c, l.dashed); err != nil {
			return err
		}
	}
	if h := res.HalfLoad; h != nil {
		// The half-load run, at its own C, as single markers.
		for _, m := range []struct {
			name string
			y    float64
			c    color.Color
		}{
			{fmt.Sprintf("admission p99 at half load (%.0f/s)", h.TargetRate), h.Admission.P99Ms, blue},
			{"notification p99 at half load", h.Notification.P99Ms, orange},
		} {
			sc, err := plotter.NewScatter(plotter.XYs{{X: float64(h.Concurrency), Y: m.y}})
			if err != nil {
				return err
			}
			sc.Shape, sc.Color, sc.Radius = draw.TriangleGlyph{}, m.c, vg.Points(4)
			p2.Add(sc)
			p2.Legend.Add(m.name, sc)
		}
	}
	p2.Legend.Top, p2.Legend.Left = true, true
	// Latencies span decades: a log scale, with headroom above for the legend.
	lo, hi := math.Inf(1), 0.0
	for _, xy := range []plotter.XYs{adm99, ntf99, adm50, ntf50} {
		for _, v := range xy {
			lo, hi = math.Min(lo, v.Y), math.Max(hi, v.Y)
		}
	}
	if h := res.HalfLoad; h != nil {
		lo = math.Min(lo, math.Min(h.Admission.P99Ms, h.Notification.P99Ms))
	}
	p2.Y.Scale, p2.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p2.Y.Min, p2.Y.Max = math.Max(lo/2, 0.1), hi*40
	p2.Y.Label.Text = "ms (log scale)"
	for _, p := range []*plot.Plot{p1, p2} {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = ticks[0].Value/1.3, ticks[len(ticks)-1].Value*1.3
		p.Add(plotter.NewGrid())
	}

	img := vgimg.New(11*vg.Inch, 4.2*vg.Inch)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Path())
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 3, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	cs := plot.Align([][]*plot.Plot{{p1, p2}}, tiles, dc)
	p1.Draw(cs[0][0])
	p2.Draw(cs[0][1])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

func addLine(p *plot.Plot, name string, xy plotter.XYs, c color.Color, dashed bool) error {
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return err
	}
	l.Color, s.Color = c, c
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		s.Shape = draw.CircleGlyph{}
	} else {
		s.Shape = draw.CircleGlyph{}
		s.Radius = vg.Points(3)
	}
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// summarizeFiles reads several runs' results and writes their medians.
func summarizeFiles(cfg config) error {
	files, err := filepath.Glob(cfg.summarize)
	if err != nil {
		return err
	}
	slices.Sort(files)
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Clean(f) == filepath.Clean(cfg.out) })
	if len(files) == 0 {
		return fmt.Errorf("no files match %q", cfg.summarize)
	}
	var runs []Results
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r Results
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, r)
	}
	out := Results{Started: runs[0].Started, Args: runs[0].Args, Host: runs[0].Host, ManagerArgs: runs[0].ManagerArgs, MedianOf: files}
	var loads []float64
	for _, r := range runs {
		loads = append(loads, r.Host.Load1AtStart)
	}
	out.Host.Load1AtStart = median(loads)
	out.Ceiling = mediansByIndex(runs, func(r Results) []CeilingResult { return r.Ceiling })
	out.OperationCeiling = mediansByIndex(runs, func(r Results) []CeilingResult { return r.OperationCeiling })
	out.LifecycleCeiling = mediansByIndex(runs, func(r Results) []CeilingResult { return r.LifecycleCeiling })
	out.Lifecycles = mediansByIndex(runs, func(r Results) []LifecycleResult { return r.Lifecycles })
	var half []LifecycleResult
	for _, r := range runs {
		if r.HalfLoad != nil {
			half = append(half, *r.HalfLoad)
		}
	}
	if len(half) > 0 {
		m := medianOf(half)
		out.HalfLoad = &m
	}
	fmt.Printf("medians of %d runs: %s\n", len(files), strings.Join(files, ", "))
	for _, c := range out.Ceiling {
		fmt.Printf("ceiling C=%d: %.0f writes/s (kube-apiserver %.2f cores, etcd %.2f, other load %.2f)\n", c.Concurrency, c.WritesPerSec, c.APIServerCores, c.EtcdCores, c.OtherCores)
	}
	if err := printTable(&out); err != nil {
		return err
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	logf("medians written to %s", cfg.out)
	if cfg.plot {
		if err := writePlot(&out, cfg.plotFile); err != nil {
			return err
		}
		logf("plot written to %s", cfg.plotFile)
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianOf takes, field by field, the median of the numeric fields of rows;
// other fields come from the first row.
// mediansByIndex takes, for each row of the first run, the median of that
// row across the runs that have it.
func mediansByIndex[T any](runs []Results, pick func(Results) []T) []T {
	first := pick(runs[0])
	out := make([]T, 0, len(first))
	for i := range first {
		var rows []T
		for _, r := range runs {
			if rs := pick(r); i < len(rs) {
				rows = append(rows, rs[i])
			}
		}
		out = append(out, medianOf(rows))
	}
	return out
}

func medianOf[T any](rows []T) T {
	out := rows[0]
	vals := make([]reflect.Value, len(rows))
	for i := range rows {
		vals[i] = reflect.ValueOf(&rows[i]).Elem()
	}
	medianInto(reflect.ValueOf(&out).Elem(), vals)
	return out
}

func medianInto(dst reflect.Value, src []reflect.Value) {
	switch dst.Kind() {
	case reflect.Struct:
		for i := range dst.NumField() {
			if !dst.Field(i).CanSet() {
				continue
			}
			fs := make([]reflect.Value, len(src))
			for j, s := range src {
				fs[j] = s.Field(i)
			}
			medianInto(dst.Field(i), fs)
		}
	case reflect.Float64:
		v := make([]float64, len(src))
		for i, s := range src {
			v[i] = s.Float()
		}
		dst.SetFloat(round(median(v), 3))
	case reflect.Int, reflect.Int64:
		v := make([]float64, len(src))
		for i, s := range src {
			v[i] = float64(s.Int())
		}
		dst.SetInt(int64(median(v)))
	case reflect.Map:
		if dst.Type().Elem().Kind() != reflect.Float64 {
			return
		}
		m := reflect.MakeMap(dst.Type())
		for _, k := range dst.MapKeys() {
			v := make([]float64, 0, len(src))
			for _, s := range src {
				if e := s.MapIndex(k); e.IsValid() {
					v = append(v, e.Float())
				} else {
					v = append(v, 0)
				}
			}
			m.SetMapIndex(k, reflect.ValueOf(round(median(v), 3)))
		}
		dst.Set(m)
	}
}
