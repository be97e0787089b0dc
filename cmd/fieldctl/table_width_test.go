package main

import (
	"strings"
	"testing"
)

// TestTableColumnsLineUpByDisplayWidth: each row's second column starts at
// the same terminal cell, whatever the first holds. The widths are what a
// terminal draws, written out by hand: a Chinese character and an emoji
// take two cells, a ZWJ family or a flag is one emoji, a combining mark
// takes none.
func TestTableColumnsLineUpByDisplayWidth(t *testing.T) {
	cells := []struct {
		text  string
		width int
	}{
		{"NAME", 4}, // the header
		{"周建國的手機", 12},
		{"phone 📱", 8},
		{"👩\u200d👩\u200d👧 family", 9},    // one emoji, a space, six letters
		{"🇨🇳 flag", 7},                   // a flag is two regional indicators drawn as one emoji
		{"Jose\u0301 Zoe\u0308", 8},      // é and ë as letter + combining accent
		{"e\u0301\u0301\u0301", 1},       // stacked marks
		{"歧亭鎮\u202e", 6 + len(`\u202e`)}, // escaped, then measured
		{"❤\ufe0f", 2},                   // text heart shown as emoji by VS16
	}
	tb := newTable(cells[0].text, "NEXT")
	for _, c := range cells[1:] {
		tb.add(c.text, "x")
	}
	var b strings.Builder
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(cells) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(cells), b.String())
	}
	want := 0
	for _, c := range cells {
		want = max(want, c.width)
	}
	want += 2 // the gap between columns
	for i, line := range lines {
		text := cellText(cells[i].text)
		rest, found := strings.CutPrefix(line, text)
		if !found {
			t.Fatalf("line %d %q does not start with %q", i, line, text)
		}
		pad := len(rest) - len(strings.TrimLeft(rest, " "))
		if got := cells[i].width + pad; got != want {
			t.Errorf("line %d: second column at cell %d, want %d: %q", i, got, want, line)
		}
	}
}

// TestClipTextCutsBetweenGraphemes: a clipped summary never splits an
// emoji sequence or drops a combining mark from its letter.
func TestClipTextCutsBetweenGraphemes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"周建國的手機周建國的手機", "周建國…"},
		{"ab👩\u200d👩\u200d👧cdefgh", "ab👩\u200d👩\u200d👧cd…"},
		{"abcde\u0301fgh", "abcde\u0301f…"},
		{"short", "short"},
	} {
		if got := clipText(tc.in, 7); got != tc.want {
			t.Errorf("clipText(%q, 7) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
