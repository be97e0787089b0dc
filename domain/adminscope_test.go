package domain

import (
	"strings"
	"testing"
)

// The scope rule: a city administrator acts anywhere; a town administrator
// only in its town, never on what lies in no town (HQ's users).
func TestAdminScopeCoversItsTownOnly(t *testing.T) {
	city, town := AdminScope{}, AdminScope{TownID: "T01"}
	for _, c := range []struct {
		s    AdminScope
		town string
		want bool
	}{
		{city, "T01", true}, {city, "T02", true}, {city, "", true},
		{town, "T01", true}, {town, "T02", false}, {town, "", false},
	} {
		if got := AdminMayAct(c.s, c.town); got != c.want {
			t.Errorf("scope %s acting in %q: %v, want %v", c.s, c.town, got, c.want)
		}
	}
	if city.String() != "city" || town.String() != "town T01" {
		t.Errorf("scope names %q, %q", city, town)
	}
}

// Account names are people's names in any script, printable, bounded.
func TestAdminNameIsAPrintablePersonsName(t *testing.T) {
	for _, ok := range []string{"王芳", "wang.fang", "Wang Fang", "欧阳 娜娜", "o'brien-2", strings.Repeat("王", MaxAdminNameChars)} {
		if m := CheckAdminName(ok); m != "" {
			t.Errorf("%q refused: %s", ok, m)
		}
	}
	for bad, says := range map[string]string{
		"":                      "required",
		"owner":                 "owner credential",
		"Owner":                 "owner credential",
		"王\u202e芳":              "U+202E",
		"wang\tfang":            "U+0009",
		"wang\u00a0fang":        "U+00A0",
		"wang\u200bfang":        "U+200B",
		"a\u0085b":              "U+0085",
		" 王芳":                   "space",
		"王  芳":                  "two spaces",
		"\xff":                  "UTF-8",
		strings.Repeat("王", 65): "65 characters",
	} {
		if m := CheckAdminName(bad); !strings.Contains(m, says) {
			t.Errorf("%q: %q, want it to say %q", bad, m, says)
		}
	}
}
