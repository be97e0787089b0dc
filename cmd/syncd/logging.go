package main

// syncd's logger (-log-format, -log-level). The metrics and health
// listener (-metrics-listen) is assembled with the rest in internal/syncd.

import (
	"fmt"
	"io"
	"log/slog"
)

// newLogHandler is syncd's log handler on w: text (logfmt-like) or json
// (one JSON object a line, for log collectors).
func newLogHandler(w io.Writer, format string, level slog.Leveler) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// checkLogLevel accepts what slog does: debug, info, warn or error (and
// offsets such as warn+2).
func checkLogLevel(v string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return fmt.Errorf("%q: want debug, info, warn or error", v)
	}
	return nil
}
