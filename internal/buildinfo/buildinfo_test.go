package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestStringSaysRevisionTimeAndModified(t *testing.T) {
	got := Info{Version: "(devel)", Revision: "7b6489d0be0e9ef5b2ce1e8b6fd0d6f71c692dbe", Time: "2026-12-06T16:09:10Z", Modified: true, Go: "go1.26.8"}.String()
	for _, want := range []string{"(devel)", "revision 7b6489d0be0e9ef5b2ce1e8b6fd0d6f71c692dbe", "2026-12-06T16:09:10Z", "(modified)", "go1.26.8", runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, lacks %q", got, want)
		}
	}
	if got := (Info{Version: "v1.2.3", Go: "go1.26.8"}).String(); !strings.Contains(got, "no revision stamped") {
		t.Errorf("without a revision: %q, want it said", got)
	}
}
