package domain

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text that people name things with (device names, app versions, names of
// units, users and households) is shown in terminals, tables and
// spreadsheets. The rules here keep it from acting on them: a terminal
// escape sequence that clears the screen or rewrites a line, a bidi
// override that shows "exe.txt" for "txt.exe", an invisible character
// that makes two names look the same, a cell a spreadsheet runs as a
// formula. Chinese, emoji, combining marks and the joiners emoji need
// (U+200C, U+200D, variation selectors, tag characters) are ordinary text.

// UnsafeRune reports whether r may not appear in a single-line name and
// is escaped by every human-facing output:
//   - C0 controls U+0000-U+001F (a name is one line: no tab or newline),
//     DEL U+007F and C1 controls U+0080-U+009F: terminals act on them
//     (ESC starts escape sequences; U+009B is CSI in some terminals);
//   - the bidi controls U+061C, U+200E, U+200F, U+202A-U+202E and
//     U+2066-U+2069: they reorder what is shown (the "Trojan Source"
//     characters, and the marks, which have no use in Chinese names);
//   - the line and paragraph separators U+2028, U+2029;
//   - invisible characters that only serve to make look-alikes: U+200B
//     (zero width space), U+2060-U+2064 (word joiner, invisible
//     operators), U+FEFF (byte order mark) and U+FFF9-U+FFFB
//     (interlinear annotation).
func UnsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200b, r == 0x200e, r == 0x200f,
		r >= 0x2028 && r <= 0x202e,
		r >= 0x2060 && r <= 0x2064,
		r >= 0x2066 && r <= 0x2069,
		r == 0xfeff,
		r >= 0xfff9 && r <= 0xfffb:
		return true
	}
	return false
}

// TextError is CheckDisplayText's error: the field and, in words, what
// is wrong with it and what is allowed.
type TextError struct {
	Field  string
	Reason string
}

func (e *TextError) Error() string { return e.Field + ": " + e.Reason }

// CheckDisplayText checks a name or version that people will read: valid
// UTF-8, at most maxBytes bytes (0: no limit), and no UnsafeRune. The
// error (a *TextError) names the field, the character by its position and
// code point, and says what is allowed; it never repeats the text itself.
func CheckDisplayText(field, s string, maxBytes int) error {
	if !utf8.ValidString(s) {
		return &TextError{field, "not valid UTF-8 text"}
	}
	if maxBytes > 0 && len(s) > maxBytes {
		return &TextError{field, fmt.Sprintf("%d bytes is too long: at most %d bytes (UTF-8; a Chinese character takes 3)", len(s), maxBytes)}
	}
	n := 0
	for _, r := range s {
		n++
		if UnsafeRune(r) {
			return &TextError{field, fmt.Sprintf("character %d is %s (%s): not allowed; "+
				"give one line of visible text (letters, digits, Chinese, emoji, punctuation, spaces); "+
				"control characters, line breaks, text direction controls and invisible characters are refused", n, runeName(r), EscapeText(string(r)))}
		}
	}
	return nil
}

// runeName says in words what kind of unsafe character r is.
func runeName(r rune) string {
	switch {
	case r == '\n' || r == '\r' || r == 0x2028 || r == 0x2029:
		return "a line break"
	case r == '\t':
		return "a tab"
	case r == 0x1b:
		return "ESC, which starts terminal escape sequences"
	case r < 0x20 || r == 0x7f:
		return "a control character"
	case r <= 0x9f:
		return "a C1 control character"
	case r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
		return "a text direction control"
	}
	return "an invisible character"
}

// EscapeText returns s with every UnsafeRune written as a Go-style escape
// (\x1b, \x85, \u202e; \t, \n and \r as such), and every byte that is not
// UTF-8 as \xNN, so that stored text, whatever it holds, reaches a
// terminal as visible characters. Other text, Chinese and emoji
// included, is returned as is. Backslashes are not doubled: this is for
// reading, not for parsing back.
func EscapeText(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case UnsafeRune(r) && r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case UnsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || UnsafeRune(r) {
			return true
		}
		i += n
	}
	return false
}

// InertCSVCell returns s as a CSV cell that no spreadsheet evaluates. A
// cell is a formula in Excel, LibreOffice or Google Sheets when it starts
// with =, +, - or @ (OWASP's "CSV injection"), and a tab or carriage
// return in front is skipped by some of them; so is other leading
// whitespace, and a full-width ＝＋－＠ typed by a Chinese input method
// may be read as its ASCII twin. Such a cell gets a leading apostrophe,
// which spreadsheets show as text and never run; every other cell is
// returned unchanged. Numbers are not exempt ("-2" becomes "'-2"): every
// whole-number field of a record is 0 or more, so a leading minus only
// comes from free text, and a rule without exceptions has nothing to slip
// through.
func InertCSVCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	t := strings.TrimLeftFunc(s, func(r rune) bool { return unicode.IsSpace(r) || UnsafeRune(r) })
	if t == "" {
		return s
	}
	r, _ := utf8.DecodeRuneInString(t)
	switch r {
	case '=', '+', '-', '@', '＝', '＋', '－', '＠':
		return "'" + s
	}
	return s
}
