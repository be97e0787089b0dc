// Package e2e holds end-to-end tests: real syncd services (SQLite file,
// embedded JetStream, gRPC over loopback) and real device engines, driven
// the way field devices, administrators and HQ use them.
package e2e
