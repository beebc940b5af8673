package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of a chart: y against x, point by point.
type series struct {
	name string
	xy   plotter.XYs
}

// chart is one panel: lines on log-scaled axes (loads and latencies span
// orders of magnitude).
type chart struct {
	title, x, y string
	lines       []series
}

func (c chart) plot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = c.title, c.x, c.y
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = ticks125{}, ticks125{}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = 4*vg.Millimeter, -2*vg.Millimeter
	p.Add(plotter.NewGrid())
	var args []any
	for _, l := range c.lines {
		if len(l.xy) == 0 {
			continue
		}
		for _, pt := range l.xy {
			if pt.X <= 0 || pt.Y <= 0 {
				return nil, fmt.Errorf("%s: %s: point (%g, %g) on a log scale", c.title, l.name, pt.X, pt.Y)
			}
		}
		args = append(args, l.name, l.xy)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	p.Y.Max *= 2.5 // room for the legend above the lines
	return p, nil
}

// ticks125 labels 1, 2 and 5 times each power of ten on a log axis, and
// marks the other integers times it.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for m := 1.0; m < 10; m++ {
			v := m * p
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			out = append(out, t)
		}
	}
	return out
}

// savePlot writes the charts side by side to results/<name>.png, beside
// the JSON (nothing when -results is empty).
func savePlot(name string, charts ...chart) error {
	if *results == "" || len(charts) == 0 {
		return nil
	}
	const w, h = 6 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w*vg.Length(len(charts)), h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(charts), PadX: vg.Millimeter, PadTop: 2 * vg.Millimeter,
		PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	for i, c := range charts {
		p, err := c.plot()
		if err != nil {
			return err
		}
		p.Draw(tiles.At(dc, i, 0))
	}
	if err := os.MkdirAll(*results, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(*results, name+".png"))
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// latencyCharts: percentiles against the offered load, and what was
// ordered against what was offered (the diagonal is keeping up).
func latencyCharts(title string, steps []step) []chart {
	var p50, p90, p99, ordered, ideal plotter.XYs
	for _, s := range steps {
		p50 = append(p50, plotter.XY{X: s.OfferedTPS, Y: s.P50ms})
		p90 = append(p90, plotter.XY{X: s.OfferedTPS, Y: s.P90ms})
		p99 = append(p99, plotter.XY{X: s.OfferedTPS, Y: s.P99ms})
		ordered = append(ordered, plotter.XY{X: s.OfferedTPS, Y: max(s.OrderedTPS, 1)})
		ideal = append(ideal, plotter.XY{X: s.OfferedTPS, Y: s.OfferedTPS})
	}
	return []chart{
		{title: title, x: "offered tx/s", y: "submit → ordered, ms",
			lines: []series{{"p50", p50}, {"p90", p90}, {"p99", p99}}},
		{title: "throughput", x: "offered tx/s", y: "ordered tx/s",
			lines: []series{{"ordered", ordered}, {"offered", ideal}}},
	}
}
