// Package buildinfo says which build of a fieldsync command is running,
// from what the Go toolchain stamped into the binary (runtime/debug):
// the module version, the VCS revision and its time, whether the work tree
// had uncommitted changes, and the Go version. The commands print it with
// -version.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows of its build. Empty fields were not stamped
// (go run, go test, or a build with -buildvcs=false).
type Info struct {
	Version  string // the main module's version: (devel) for a build from a work tree
	Revision string // the VCS commit
	Time     string // the commit's time, RFC 3339
	Modified bool   // the work tree had uncommitted changes
	Go       string // the Go version that built it
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Version, info.Go = bi.Main.Version, bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is one line for -version, e.g.
//
//	syncd (devel) revision 7b6489d5... 2026-12-06T16:09:10Z (modified) go1.26.8 linux/amd64
func (i Info) String() string {
	var b strings.Builder
	v := i.Version
	if v == "" {
		v = "(unknown version)"
	}
	b.WriteString(v)
	if i.Revision != "" {
		fmt.Fprintf(&b, " revision %s", i.Revision)
		if i.Time != "" {
			fmt.Fprintf(&b, " %s", i.Time)
		}
		if i.Modified {
			b.WriteString(" (modified)")
		}
	} else {
		b.WriteString(" (no revision stamped: built with go run, go test or -buildvcs=false)")
	}
	fmt.Fprintf(&b, " %s %s/%s", i.Go, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// Line is the -version line of program.
func Line(program string) string { return program + " " + Read().String() }
