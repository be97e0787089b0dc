package web

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/hq/report"
)

// tricky is a table with what a download must carry unchanged or make
// inert: Chinese, formulas, quotes, commas, line breaks, XML specials.
var tricky = report.Table{
	Name: "not-visited", Title: "未走访农户：一组/二组",
	Columns: []report.Column{{Key: "head", Label: "户主"}, {Key: "address", Label: "住址"}, {Key: "n", Label: "人口", Numeric: true}, {Key: "share", Label: "覆盖率", Numeric: true}},
	Rows: [][]report.Cell{
		{{Text: "张三"}, {Text: "一组1号, \"老屋\""}, {Text: "3", Num: 3}, {Text: "87.5%", Num: 87.5}},
		{{Text: "=1+1"}, {Text: "+86 123"}, {Text: "-2", Num: -2}, {Text: "0%", Num: 0}},
		{{Text: "-SUM(A1)"}, {Text: "@cmd"}, {Text: "\tx", Num: 0}, {Text: "—", Num: 0}},
		{{Text: "\r李四"}, {Text: "a<b>&c\n二行"}, {Text: "=2", Num: 2}, {Text: "1", Num: 1}},
	},
}

func TestCSVBytes(t *testing.T) {
	var b bytes.Buffer
	if err := writeCSV(&b, tricky); err != nil {
		t.Fatal(err)
	}
	want := "\xEF\xBB\xBF" +
		"户主,住址,人口,覆盖率\r\n" +
		"张三,\"一组1号, \"\"老屋\"\"\",3,87.5%\r\n" +
		"'=1+1,'+86 123,-2,0%\r\n" +
		"'-SUM(A1),'@cmd,'\tx,—\r\n" +
		"\"'\r李四\",\"a<b>&c\n二行\",'=2,1\r\n"
	if got := b.String(); got != want {
		t.Errorf("CSV:\n got %q\nwant %q", got, want)
	}
}

// xlsxSheet is sheet1.xml as read back.
type xlsxSheet struct {
	Rows []struct {
		R     int `xml:"r,attr"`
		Cells []struct {
			Ref string `xml:"r,attr"`
			T   string `xml:"t,attr"`
			V   string `xml:"v"`
			IS  struct {
				T string `xml:"t"`
			} `xml:"is"`
		} `xml:"c"`
	} `xml:"sheetData>row"`
}

// readXLSX opens b as a zip, checks every part is well-formed XML and
// returns the sheet's cells as text (numbers as written).
func readXLSX(t testing.TB, b []byte) (cells [][]string, types [][]string) {
	t.Helper()
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	parts := map[string][]byte{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		parts[f.Name] = data
		d := xml.NewDecoder(bytes.NewReader(data))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
		}
	}
	for _, p := range []string{"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/worksheets/sheet1.xml", "xl/styles.xml"} {
		if parts[p] == nil {
			t.Errorf("xlsx lacks %s", p)
		}
	}
	var s xlsxSheet
	if err := xml.Unmarshal(parts["xl/worksheets/sheet1.xml"], &s); err != nil {
		t.Fatal(err)
	}
	for i, row := range s.Rows {
		if row.R != i+1 {
			t.Errorf("row %d numbered %d", i+1, row.R)
		}
		var cs, ts []string
		for j, c := range row.Cells {
			if want := cellRef(j, i+1); c.Ref != want {
				t.Errorf("cell %q, want %q", c.Ref, want)
			}
			if c.T == "inlineStr" {
				cs = append(cs, c.IS.T)
			} else {
				cs = append(cs, c.V)
			}
			ts = append(ts, c.T)
		}
		cells, types = append(cells, cs), append(types, ts)
	}
	return cells, types
}

func TestXLSXCells(t *testing.T) {
	var b bytes.Buffer
	if err := writeXLSX(&b, tricky); err != nil {
		t.Fatal(err)
	}
	cells, types := readXLSX(t, b.Bytes())
	want := [][]string{
		{"户主", "住址", "人口", "覆盖率"},
		{"张三", "一组1号, \"老屋\"", "3", "0.875"},
		{"=1+1", "+86 123", "-2", "0"},
		{"-SUM(A1)", "@cmd", "\tx", "—"},
		{"\r李四", "a<b>&c\n二行", "=2", "1"},
	}
	if len(cells) != len(want) {
		t.Fatalf("rows %d, want %d: %q", len(cells), len(want), cells)
	}
	for i := range want {
		for j := range want[i] {
			if j >= len(cells[i]) || cells[i][j] != want[i][j] {
				t.Errorf("row %d col %d: %q, want %q", i+1, j+1, cells[i], want[i][j])
				break
			}
		}
	}
	if types[1][0] != "inlineStr" || types[1][2] != "" {
		t.Errorf("types %q: want strings inline and numbers as numbers", types[1])
	}
	if got := sheetName(tricky); got != "未走访农户：一组 二组" {
		t.Errorf("sheet name %q", got)
	}
}

func TestCellRef(t *testing.T) {
	for col, want := range map[int]string{0: "A1", 25: "Z1", 26: "AA1", 27: "AB1", 701: "ZZ1", 702: "AAA1"} {
		if got := cellRef(col, 1); got != want {
			t.Errorf("cellRef(%d) = %s, want %s", col, got, want)
		}
	}
}

func TestChartSVG(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     report.Chart
		shape string
	}{
		{"trend", report.Chart{Title: "走访覆盖率 <12 个月>", Labels: []string{"01", "02", "03", "04", "05", "06", "07"},
			Series: []report.Series{{Name: "镇一", Values: []float64{.1, .2, .3, .4, .5, .6, .7}}}}, "circle"},
		{"bars", report.Chart{Title: "纠纷", Labels: []string{"村一", "村二"},
			Series: []report.Series{{Name: "待调解", Values: []float64{3, 4}}, {Name: "调解中", Values: []float64{1, 0}}}}, "rect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svg := string(chartSVG(tc.c))
			d := xml.NewDecoder(strings.NewReader(svg))
			titles, shapes := 0, 0
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("SVG not well-formed: %v\n%s", err, svg)
				}
				if se, ok := tok.(xml.StartElement); ok {
					switch se.Name.Local {
					case "title":
						titles++
					case tc.shape:
						shapes++
					}
				}
			}
			values := 0
			for _, s := range tc.c.Series {
				values += len(s.Values)
			}
			// One title for the chart, one per value.
			if titles != values+1 {
				t.Errorf("titles %d, want %d", titles, values+1)
			}
			if shapes < values {
				t.Errorf("%s elements %d, want at least %d", tc.shape, shapes, values)
			}
			if strings.Contains(svg, "style=") {
				t.Error("inline style: the CSP forbids it")
			}
		})
	}
}

func TestCheckPlainListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8480": true, "[::1]:8480": true, "localhost:8480": true, "127.0.0.2:1": true,
		":8480": false, "0.0.0.0:8480": false, "10.0.0.5:8480": false, "hq.example:443": false, "nonsense": false,
	} {
		if err := CheckPlainListen(addr); (err == nil) != ok {
			t.Errorf("CheckPlainListen(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}
