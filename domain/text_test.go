package domain

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDisplayTextKeepsChineseEmojiAndMarks(t *testing.T) {
	for _, s := range []string{
		"", "周建國的手機", "張家塆1號 (東)", "👩\u200d👩\u200d👧", "🇨🇳", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
		"❤\ufe0f", "Jose\u0301", "मि\u200cत्र", "2.1.0-beta+測試", "ｆｕｌｌ　ｗｉｄｔｈ", "\ue000 private",
	} {
		if err := CheckDisplayText("device_name", s, 0); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
		if got := EscapeText(s); got != s {
			t.Errorf("EscapeText(%q) = %q: changed ordinary text", s, got)
		}
	}
}

func TestDisplayTextRefusesControlsAndNamesTheField(t *testing.T) {
	for _, tc := range []struct{ in, char string }{
		{"a\x1b[2J", `\x1b`}, {"a\x00", `\x00`}, {"a\tb", `\t`}, {"a\nb", `\n`}, {"a\rb", `\r`}, {"a\x7f", `\x7f`},
		{"a\u0080", `\x80`}, {"a\u0085", `\x85`}, {"a\u009b31m", `\x9b`},
		{"a\u061c", `\u061c`}, {"a\u200e", `\u200e`}, {"a\u200f", `\u200f`},
		{"a\u202a", `\u202a`}, {"a\u202b", `\u202b`}, {"a\u202c", `\u202c`}, {"a\u202d", `\u202d`}, {"a\u202e", `\u202e`},
		{"a\u2066", `\u2066`}, {"a\u2067", `\u2067`}, {"a\u2068", `\u2068`}, {"a\u2069", `\u2069`},
		{"a\u2028", `\u2028`}, {"a\u2029", `\u2029`}, {"a\u200b", `\u200b`}, {"a\u2060", `\u2060`}, {"a\ufeff", `\ufeff`}, {"a\ufff9", `\ufff9`},
	} {
		err := CheckDisplayText("app_version", tc.in, 64)
		var te *TextError
		if !errors.As(err, &te) || te.Field != "app_version" || !strings.HasPrefix(err.Error(), "app_version: character 2 is ") ||
			!strings.Contains(err.Error(), "("+tc.char+")") || !utf8.ValidString(err.Error()) || strings.ContainsRune(err.Error(), []rune(tc.in)[1]) {
			t.Errorf("%q: %v", tc.in, err)
		}
		if got, want := EscapeText(tc.in), "a"+tc.char+string([]rune(tc.in)[2:]); got != want {
			t.Errorf("EscapeText(%q) = %s, want %s", tc.in, got, want)
		}
	}
	if err := CheckDisplayText("device_name", strings.Repeat("周", 67), 200); err == nil || !strings.HasPrefix(err.Error(), "device_name: 201 bytes is too long: at most 200") {
		t.Errorf("too long: %v", err)
	}
	if err := CheckDisplayText("device_name", "a\xff", 0); err == nil || err.Error() != "device_name: not valid UTF-8 text" {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

func TestEscapeText(t *testing.T) {
	for in, want := range map[string]string{
		"phone\x1b[2J\u202eevil\u0085": `phone\x1b[2J\u202eevil\x85`,
		"line\nbreak\ttab\r":           `line\nbreak\ttab\r`,
		"bad \xff\xfe byte":            `bad \xff\xfe byte`,
		`back\slash 周`:                 `back\slash 周`,
	} {
		if got := EscapeText(in); got != want {
			t.Errorf("EscapeText(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestInertCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		`=HYPERLINK("http://x","y")`: `'=HYPERLINK("http://x","y")`,
		"+1":                         "'+1",
		"-2+3":                       "'-2+3",
		"-2":                         "'-2",
		"@SUM(A1)":                   "'@SUM(A1)",
		"\t=1":                       "'\t=1",
		"\tplain":                    "'\tplain",
		"\r=1":                       "'\r=1",
		" =1":                        "' =1",
		"\n=1":                       "'\n=1",
		"\u3000=1":                   "'\u3000=1",
		"\u202e=1":                   "'\u202e=1",
		"＝1+1":                       "'＝1+1",
		"＠SUM(A1)":                   "'＠SUM(A1)",
		"":                           "",
		"   ":                        "   ",
		"周大海":                        "周大海",
		"1+1":                        "1+1",
		"a=b":                        "a=b",
		"'quoted":                    "'quoted",
		"2026-11-20":                 "2026-11-20",
	} {
		if got := InertCSVCell(in); got != want {
			t.Errorf("InertCSVCell(%q) = %q, want %q", in, got, want)
		}
	}
}
