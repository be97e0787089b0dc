package main

import (
	"strings"
	"testing"
)

// Every new device command explains itself with -h: what it does, an
// example, and the statuses, categories or levels it takes with their
// Chinese labels where a person picks one.
func TestDeviceWorkCommandsExplainThemselves(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		contains []string
	}{
		{[]string{"device", "-h"}, []string{"need", "project", "void", "conflicts", "settle", "assign", "unassign", "-lang"}},
		{[]string{"device", "need", "-h"}, []string{"raise", "take", "refer", "resolve", "note", "edit", "referred -> taken, resolved"}},
		{[]string{"device", "project", "-h"}, []string{"add", "start", "progress", "complete", "abandon", "completing requires an outcome"}},
		{[]string{"device", "need", "raise", "-h"}, []string{"Example:", "-household", "-visit", "housing 住房"}},
		{[]string{"device", "need", "refer", "-h"}, []string{"Example:", "-reason", "required"}},
		{[]string{"device", "project", "complete", "-h"}, []string{"Example:", "-outcome"}},
		{[]string{"device", "project", "progress", "-h"}, []string{"Example:", "standard input"}},
		{[]string{"device", "dispute", "report", "-h"}, []string{"Example:", "-occurred", "hazard 小隐患"}},
		{[]string{"device", "dispute", "status", "-h"}, []string{"-level", "-agreed-on", "village 村级化解"}},
		{[]string{"device", "void", "-h"}, []string{"Example:", "-reason", "已作废"}},
		{[]string{"device", "conflicts", "-h"}, []string{"Example:", "--mine", "-json"}},
		{[]string{"device", "settle", "-h"}, []string{"Example:", "-mine", "-theirs", "-value"}},
		{[]string{"device", "assign", "-h"}, []string{"Example:", "secretary"}},
		{[]string{"device", "unassign", "-h"}, []string{"Example:"}},
	} {
		r := fieldctl(t, tc.args...)
		for _, want := range tc.contains {
			if r.code != 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("%s: exit %d, want %q in:\n%s", strings.Join(tc.args, " "), r.code, want, r.stderr)
				break
			}
		}
	}
}
