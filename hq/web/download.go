package web

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/hq/report"
)

func (s *Server) download(w http.ResponseWriter, r *http.Request, ss *session, name, format string, q report.Query, res *report.Result) {
	lang := q.Lang
	ti := r.URL.Query().Get("table")
	if ti == "" {
		ti = "0"
	}
	i, err := strconv.Atoi(ti)
	if err != nil || i < 0 || i >= len(res.Tables) {
		s.fail(w, r, ss, http.StatusBadRequest, fmt.Sprintf("%stable=%q: %s", msg(lang, "err_400"), ti,
			fmt.Sprintf("0 to %d", len(res.Tables)-1)))
		return
	}
	t := res.Tables[i]
	month := q.Month
	if month == "" {
		month = s.cfg.Now().In(china).Format("2006-01")
	}
	var buf bytes.Buffer
	var ctype string
	switch format {
	case "csv":
		ctype = "text/csv; charset=utf-8"
		err = writeCSV(&buf, t)
	case "xlsx":
		ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
		err = writeXLSX(&buf, t)
	}
	if err != nil {
		s.internal(w, r, ss, err)
		return
	}
	detail := fmt.Sprintf("page=%s table=%s format=%s query=%s", name, t.Name, format, r.URL.RawQuery)
	if err := audit(r.Context(), s.db, s.cfg.Now().UnixMilli(), ss.who.ID, "download", detail, remoteOf(r)); err != nil {
		s.internal(w, r, ss, err)
		return
	}
	file := safeName(t.Name) + "-" + safeName(month) + "." + format
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+file+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func safeName(s string) string { return unsafeName.ReplaceAllString(s, "_") }

// plainNumber is a number as the report writes one: never a formula.
var plainNumber = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?%?$`)

// inert makes a cell a spreadsheet will not run: text starting with = + -
// @, a tab or a carriage return gets a leading ' (OWASP's CSV injection
// advice). A plain number in a numeric column stays as it is.
func inert(text string, numeric bool) string {
	if text == "" || (numeric && plainNumber.MatchString(text)) {
		return text
	}
	switch text[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + text
	}
	return text
}

// writeCSV writes t as CSV: UTF-8 with a byte-order mark (so Excel reads
// Chinese right), CRLF line ends, RFC 4180 quoting, the column labels
// first. Fields are written byte for byte (encoding/csv's CRLF mode would
// drop a lone CR and rewrite LF inside a field).
func writeCSV(w io.Writer, t report.Table) error {
	var b strings.Builder
	b.WriteString("\uFEFF")
	line := func(fields []string) {
		for i, f := range fields {
			if i > 0 {
				b.WriteByte(',')
			}
			if strings.ContainsAny(f, ",\"\r\n") || strings.HasPrefix(f, " ") || strings.HasSuffix(f, " ") {
				f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
			}
			b.WriteString(f)
		}
		b.WriteString("\r\n")
	}
	head := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		head[i] = inert(c.Label, false)
	}
	line(head)
	for _, row := range t.Rows {
		rec := make([]string, len(row))
		for i, c := range row {
			rec[i] = inert(c.Text, i < len(t.Columns) && t.Columns[i].Numeric)
		}
		line(rec)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeXLSX writes t as the smallest workbook Excel, LibreOffice and WPS
// open: one sheet, strings inline (no shared-string table), numeric
// columns as numbers (Cell.Num) where the cell shows a number ("—" for
// "no share" stays text, not a zero).
func writeXLSX(w io.Writer, t report.Table) error {
	z := zip.NewWriter(w)
	files := []struct{ name, body string }{
		{"[Content_Types].xml", xml.Header + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
			`<Default Extension="xml" ContentType="application/xml"/>` +
			`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>` +
			`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>` +
			`<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>` +
			`</Types>`},
		{"_rels/.rels", xml.Header + `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>` +
			`</Relationships>`},
		{"xl/workbook.xml", xml.Header + `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" ` +
			`xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>` +
			`<sheet name="` + xmlText(sheetName(t)) + `" sheetId="1" r:id="rId1"/></sheets></workbook>`},
		{"xl/_rels/workbook.xml.rels", xml.Header + `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>` +
			`<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>` +
			`</Relationships>`},
		// Two cell formats: 0 the default, 1 a percentage with one decimal.
		{"xl/styles.xml", xml.Header + `<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">` +
			`<numFmts count="1"><numFmt numFmtId="164" formatCode="0.0%"/></numFmts>` +
			`<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>` +
			`<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>` +
			`<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>` +
			`<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>` +
			`<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>` +
			`<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>` +
			`<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>` +
			`</styleSheet>`},
		{"xl/worksheets/sheet1.xml", sheetXML(t)},
	}
	for _, f := range files {
		fw, err := z.Create(f.name)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(fw, f.body); err != nil {
			return err
		}
	}
	return z.Close()
}

func sheetXML(t report.Table) string {
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString(`<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`)
	str := func(ref, s string) {
		b.WriteString(`<c r="` + ref + `" t="inlineStr"><is><t xml:space="preserve">` + xmlText(s) + `</t></is></c>`)
	}
	b.WriteString(`<row r="1">`)
	for i, c := range t.Columns {
		str(cellRef(i, 1), c.Label)
	}
	b.WriteString(`</row>`)
	for ri, row := range t.Rows {
		n := ri + 2
		b.WriteString(`<row r="` + strconv.Itoa(n) + `">`)
		for i, c := range row {
			if i < len(t.Columns) && t.Columns[i].Numeric && plainNumber.MatchString(c.Text) && !math.IsNaN(c.Num) && !math.IsInf(c.Num, 0) {
				if v, ok := percent(c.Text); ok {
					b.WriteString(`<c r="` + cellRef(i, n) + `" s="1"><v>` + fmtXLSXNum(v) + `</v></c>`)
					continue
				}
				b.WriteString(`<c r="` + cellRef(i, n) + `"><v>` + fmtXLSXNum(c.Num) + `</v></c>`)
				continue
			}
			str(cellRef(i, n), c.Text)
		}
		b.WriteString(`</row>`)
	}
	b.WriteString(`</sheetData></worksheet>`)
	return b.String()
}

// cellRef is the A1 name of column col (from 0) in row (from 1).
func cellRef(col, row int) string {
	name := ""
	for col++; col > 0; col = (col - 1) / 26 {
		name = string(rune('A'+(col-1)%26)) + name
	}
	return name + strconv.Itoa(row)
}

// sheetName is the table's title as Excel allows a sheet name: at most 31
// characters, none of []:*?/\.
func sheetName(t report.Table) string {
	s := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`[]:*?/\`, r) {
			return ' '
		}
		return r
	}, t.Title)
	s = strings.TrimSpace(s)
	if rs := []rune(s); len(rs) > 31 {
		s = string(rs[:31])
	}
	if s == "" {
		s = "Sheet1"
	}
	return s
}

// xmlText escapes s for XML (characters XML 1.0 cannot hold become U+FFFD).
func xmlText(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fmtXLSXNum writes a number as a sheet's <v> holds it.
func fmtXLSXNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// percent reads a share as shown ("87.5%") as the fraction a spreadsheet
// holds (0.875), whatever scale Cell.Num uses.
func percent(text string) (float64, bool) {
	p, ok := strings.CutSuffix(text, "%")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(p, 64)
	if err != nil {
		return 0, false
	}
	return math.Round(v*1e6) / 1e8, true
}
