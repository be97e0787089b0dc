package domain

import (
	"strings"
	"testing"
)

func TestRegionNames(t *testing.T) {
	for _, ok := range []string{"", "a", "xiaonan", "yunmeng2", "abcdefghijklmnopqrstuvwxyz012345"} {
		if err := CheckRegion(ok); err != nil {
			t.Errorf("CheckRegion(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"Xiaonan", "2a", "xiao-nan", "xiao.nan", "孝南", "abcdefghijklmnopqrstuvwxyz0123456", "a b", "a>"} {
		if err := CheckRegion(bad); err == nil {
			t.Errorf("CheckRegion(%q) = nil, want an error", bad)
		}
	}
}

func TestRegionStreamsAndSubjects(t *testing.T) {
	cases := []struct{ region, stream, prefix, subject string }{
		{"", "FIELDSYNC_CHANGES", "fieldsync.changes", "fieldsync.changes.T01.visit"},
		{"xiaonan", "FIELDSYNC_CHANGES_XIAONAN", "fieldsync.changes.xiaonan", "fieldsync.changes.xiaonan.T01.visit"},
	}
	for _, c := range cases {
		if got := RegionStream(c.region); got != c.stream {
			t.Errorf("RegionStream(%q) = %q, want %q", c.region, got, c.stream)
		}
		if got := RegionSubjectPrefix(c.region); got != c.prefix {
			t.Errorf("RegionSubjectPrefix(%q) = %q, want %q", c.region, got, c.prefix)
		}
		if got := RegionSubject(c.region, "fieldsync.changes.T01.visit"); got != c.subject {
			t.Errorf("RegionSubject(%q, …) = %q, want %q", c.region, got, c.subject)
		}
	}
	if got := RegionSubject("xiaonan", "other.subject"); got != "other.subject" {
		t.Errorf("RegionSubject of a foreign subject = %q, want it unchanged", got)
	}
	if RegionStream("a") == RegionStream("b") || RegionSubjectPrefix("a") == RegionSubjectPrefix("b") {
		t.Error("two regions share a stream or a subject prefix")
	}
}

func TestRegionOwnsIDs(t *testing.T) {
	if !RegionOwns("", "T01") {
		t.Error("no region must own every id")
	}
	for _, c := range []struct {
		id   string
		owns bool
	}{{"xiaonan-T01", true}, {"xiaonan-U-m1", true}, {"xiaonan-", false}, {"xiaonan", false}, {"T01", false}, {"yunmeng-T01", false}, {"xiaonanx-T01", false}} {
		if got := RegionOwns("xiaonan", c.id); got != c.owns {
			t.Errorf("RegionOwns(xiaonan, %q) = %v, want %v", c.id, got, c.owns)
		}
	}
	for id, want := range map[string]string{"xiaonan-T01": "xiaonan", "xiaonan-U-m1": "xiaonan", "U-m1": "", "T01": "", "-x": "", "a-": "", "2a-x": ""} {
		if got := RegionOfID(id); got != want {
			t.Errorf("RegionOfID(%q) = %q, want %q", id, got, want)
		}
	}
	if err := RegionOwnsError("xiaonan", "units.csv line 3: id", "T01"); err == nil || !strings.Contains(err.Error(), `"xiaonan-"`) {
		t.Errorf("RegionOwnsError = %v, want it to name the prefix", err)
	}
}
