package web

import (
	"fmt"
	"net"
)

// CheckPlainListen says whether addr may be served over plain HTTP: only
// on a loopback address (127.0.0.0/8, ::1, localhost). Anywhere else the
// page must be served over TLS: sign-in codes and session cookies would
// otherwise cross the network in the clear.
func CheckPlainListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: want host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "all interfaces"
	}
	return fmt.Errorf("listen address %q (%s): plain HTTP is served only on loopback (127.0.0.1, ::1, localhost); give a TLS certificate to serve elsewhere", addr, host)
}
