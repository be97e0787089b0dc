// Package server implements syncd's gRPC services on top of package store:
//
//   - SyncService: a device pushes its numbered mutations and pulls what
//     changed in its buckets, in one round trip (sync.go, apply.go); Watch
//     pokes connected devices when their buckets change (hub.go).
//   - EnrollService: a one-time code becomes a device credential.
//   - AdminService: org import, assignments, enrollment codes, devices.
//   - ExportService: HQ streams records from a version.
//
// It also runs the relay that publishes the changes table to JetStream
// (relay.go) and can embed a nats-server (nats.go).
//
// Authentication is by interceptor (auth.go): the caller's device, user and
// role come from the credential, never from the request. gRPC status codes
// are chosen here and only here.
package server
