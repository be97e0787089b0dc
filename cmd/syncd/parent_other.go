//go:build !linux

package main

import (
	"context"
	"io"
)

// stopWithGoRun is ctx with a cancel: outside Linux syncd does not look for
// the go command of go run (see parent_linux.go); stop it with Ctrl-C.
func stopWithGoRun(ctx context.Context, stderr io.Writer) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
