package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/hq/report"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 720, 260
	padL, padR, padT, padB = 56, 16, 44, 44
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
	lineChartMinLabels     = 6
)

// chartSVG draws c as inline SVG on the server (no script, no external
// file): a line chart for a trend (six labels or more), bars otherwise;
// every point or bar carries its value in a <title> tooltip. Colours come
// from classes in style.css, as the page's CSP allows no inline styles.
func chartSVG(c report.Chart) template.HTML {
	esc := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title><text class="title" x="%d" y="16">%s</text>`, esc(c.Title), padL, esc(c.Title))
	max := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) && v > max {
				max = v
			}
		}
	}
	if max <= 0 {
		max = 1
	}
	max = niceCeil(max)
	y := func(v float64) float64 { return float64(padT+plotH) - v/max*float64(plotH) }
	// Grid and y-axis labels at 0, 1/4 ... max.
	for i := 0; i <= 4; i++ {
		v := max * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, padL, y(v), padL+plotW, y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y(v)+4, fmtNum(v))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, padL, padT, padL, padT+plotH)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, padL, padT+plotH, padL+plotW, padT+plotH)
	n := len(c.Labels)
	if n == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	slot := float64(plotW) / float64(n)
	cx := func(i int) float64 { return float64(padL) + slot*(float64(i)+0.5) }
	// Show every label when they fit, else every k-th.
	step := int(math.Ceil(float64(n) / (float64(plotW) / 56)))
	for i, l := range c.Labels {
		if i%step == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, cx(i), padT+plotH+16, esc(l))
		}
	}
	// Legend.
	for si, s := range c.Series {
		x := padL + 8 + si*140
		fmt.Fprintf(&b, `<rect class="s%d" x="%d" y="24" width="10" height="10"/><text x="%d" y="33">%s</text>`, si%5, x, x+14, esc(s.Name))
	}
	value := func(s report.Series, i int) (float64, bool) {
		if i >= len(s.Values) || math.IsNaN(s.Values[i]) || math.IsInf(s.Values[i], 0) {
			return 0, false
		}
		return s.Values[i], true
	}
	if n >= lineChartMinLabels {
		for si, s := range c.Series {
			var pts []string
			for i := range c.Labels {
				if v, ok := value(s, i); ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", cx(i), y(v)))
				}
			}
			fmt.Fprintf(&b, `<polyline class="s%d" points="%s"/>`, si%5, strings.Join(pts, " "))
			for i, l := range c.Labels {
				if v, ok := value(s, i); ok {
					fmt.Fprintf(&b, `<circle class="s%d" cx="%.1f" cy="%.1f" r="3.5"><title>%s · %s: %s</title></circle>`,
						si%5, cx(i), y(v), esc(s.Name), esc(l), fmtNum(v))
				}
			}
		}
	} else if k := len(c.Series); k > 0 {
		bw := slot * 0.8 / float64(k)
		for si, s := range c.Series {
			for i, l := range c.Labels {
				v, ok := value(s, i)
				if !ok {
					continue
				}
				x := cx(i) - slot*0.4 + bw*float64(si)
				fmt.Fprintf(&b, `<rect class="s%d" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s · %s: %s</title></rect>`,
					si%5, x, y(v), bw, float64(padT+plotH)-y(v), esc(s.Name), esc(l), fmtNum(v))
			}
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}
