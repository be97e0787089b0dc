package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rivo/uniseg"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// writeJSON writes v as indented JSON. HTML escaping is off so that
// Chinese text and "<", "&" stay as they are.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(inertJSON{w})
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newNDJSON returns an encoder that writes one compact JSON value a line.
func newNDJSON(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(inertJSON{w})
	enc.SetEscapeHTML(false)
	return enc
}

// inertJSON writes JSON with every domain.UnsafeRune that encoding/json
// leaves raw (DEL, C1 controls, direction controls, U+FEFF; it escapes
// C0 itself) written as \uXXXX, so that --json output on a terminal is as
// inert as a table, and decodes to the same strings. json.Encoder hands
// over each value in one Write, so no character is split between calls;
// outside strings JSON is ASCII, so only string contents change.
type inertJSON struct{ w io.Writer }

func (j inertJSON) Write(p []byte) (int, error) {
	s := string(p)
	if strings.IndexFunc(s, func(r rune) bool { return r >= 0x7f && domain.UnsafeRune(r) }) < 0 {
		return j.w.Write(p)
	}
	var b strings.Builder
	for _, r := range s {
		if r >= 0x7f && domain.UnsafeRune(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	if _, err := io.WriteString(j.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// table writes aligned columns. Unlike text/tabwriter it pads by display
// width, so that columns of Chinese text (two cells a character in a
// terminal) line up.
type table struct {
	rows [][]string
}

// newTable starts a table with a header row, if one is given.
func newTable(header ...string) *table {
	t := &table{}
	if len(header) > 0 {
		t.rows = append(t.rows, header)
	}
	return t
}

func (t *table) add(cells ...string) {
	for i, s := range cells {
		cells[i] = cellText(s)
	}
	t.rows = append(t.rows, cells)
}

func (t *table) write(w io.Writer) error {
	var widths []int
	for _, r := range t.rows {
		for i, s := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(s))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, s := range r {
			b.WriteString(s)
			if i == len(r)-1 {
				break
			}
			b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(s)+2))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cellText keeps a table row on one line and its text inert: line breaks
// and tabs become spaces, other control, direction and invisible
// characters are shown escaped (domain.EscapeText).
func cellText(s string) string {
	if s == "" {
		return "-"
	}
	return domain.EscapeText(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s))
}

// escapeLines escapes text for a terminal like cellText, but keeps its
// line breaks: for multi-line values (notes) and error messages.
func escapeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = domain.EscapeText(l)
	}
	return strings.Join(lines, "\n")
}

// displayWidth is how many terminal cells s takes, counted by grapheme
// cluster as terminals draw them (uniseg, after Unicode's East Asian Width
// and emoji rules): two for Chinese and emoji, a ZWJ sequence or a flag
// as one emoji, nothing for combining marks.
func displayWidth(s string) int {
	return uniseg.StringWidth(s)
}

// clipText shortens s to about n display cells, for table summaries. It
// cuts between grapheme clusters, never inside an emoji sequence or
// before a combining mark.
func clipText(s string, n int) string {
	if displayWidth(s) <= n {
		return s
	}
	var b strings.Builder
	w := 0
	g := uniseg.NewGraphemes(s)
	for g.Next() {
		if w += g.Width(); w > n-1 {
			break
		}
		b.WriteString(g.Str())
	}
	return b.String() + "…"
}

// fmtTime renders Unix milliseconds in local time, or "never".
func fmtTime(ms int64) string {
	if ms == 0 {
		return "never"
	}
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05")
}

// rfc3339 renders Unix milliseconds for JSON ("" for none).
func rfc3339(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).Format(time.RFC3339)
}

// hlcTime renders the wall time of a hybrid logical clock reading.
func hlcTime(s string) string {
	h, err := domain.ParseHLC(s)
	if err != nil {
		return s
	}
	return fmtTime(h.Wall)
}

// recordJSON is a record as fieldctl prints it: the export's NDJSON line,
// and (with state and reason) a device's record.
type recordJSON struct {
	ID             string            `json:"id"`
	Kind           string            `json:"kind"`
	State          string            `json:"state,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	Version        uint64            `json:"version"`
	AuthorID       string            `json:"author_id"`
	OriginDeviceID string            `json:"origin_device_id"`
	Fields         map[string]string `json:"fields"`
	Entries        []entryJSON       `json:"entries"`
	Conflicts      []conflictJSON    `json:"conflicts"`
	Buckets        []string          `json:"buckets"`
}

type entryJSON struct {
	Field    string `json:"field"`
	Text     string `json:"text"`
	HLC      string `json:"hlc"`
	AuthorID string `json:"author_id"`
}

type conflictJSON struct {
	Field    string `json:"field"`
	Value    string `json:"value"`
	HLC      string `json:"hlc"`
	AuthorID string `json:"author_id"`
	Reason   string `json:"reason"`
}

func toRecordJSON(r *pb.Record) *recordJSON {
	out := &recordJSON{ID: r.GetId(), Kind: domain.KindName(r.GetKind()), Version: r.GetVersion(),
		AuthorID: r.GetAuthorId(), OriginDeviceID: r.GetOriginDeviceId(), Fields: map[string]string{},
		Entries: []entryJSON{}, Conflicts: []conflictJSON{}, Buckets: append([]string{}, r.GetBuckets()...)}
	for name, v := range r.GetFields() {
		out.Fields[name] = v.GetValue()
	}
	for _, e := range r.GetEntries() {
		out.Entries = append(out.Entries, entryJSON{Field: e.GetField(), Text: e.GetText(), HLC: e.GetHlc(), AuthorID: e.GetAuthorId()})
	}
	for _, c := range r.GetConflicts() {
		out.Conflicts = append(out.Conflicts, conflictJSON{Field: c.GetField(), Value: c.GetValue(), HLC: c.GetHlc(), AuthorID: c.GetAuthorId(), Reason: c.GetReason()})
	}
	return out
}

// indent lines up the continuation lines of a multi-line value.
func indent(s string, n int) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}

// plural returns "1 row" or "2 rows".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
