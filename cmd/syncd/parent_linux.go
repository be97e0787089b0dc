package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// parentPoll is how often a syncd started by go run checks that the go
// command is still there.
const parentPoll = 500 * time.Millisecond

// stopWithGoRun returns ctx, cancelled also when syncd was started by
// `go run` and the go command has gone. SIGTERM kills go run without
// passing the signal on, which left syncd running, orphaned, on its ports.
// Only a parent named "go" is watched: a syncd whose parent is a shell
// that exits, nohup or a service manager keeps running, as a daemon must.
func stopWithGoRun(ctx context.Context, stderr io.Writer) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	ppid := os.Getppid()
	if parentName(ppid) != "go" {
		return ctx, cancel
	}
	go func() {
		t := time.NewTicker(parentPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// An orphan is adopted by init or a subreaper: its parent
			// changes, and the go command's pid may be reused.
			if os.Getppid() != ppid {
				fmt.Fprintf(stderr, "syncd: the go command that started it (go run, pid %d) has exited: stopping\n", ppid)
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}

// parentName is the command name of process pid ("" if unknown).
func parentName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
