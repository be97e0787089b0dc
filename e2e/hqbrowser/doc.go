// Package hqbrowser tests the HQ page as HQ uses it: in a real headless
// Chromium (Debian's chromium, driven by chromedp), against a real syncd
// assembly (internal/testenv: SQLite, embedded NATS with JetStream, gRPC
// with TLS) serving the page on its embedded default, with phones
// (syncer) syncing visits. It has no code outside its tests.
//
// Without /usr/bin/chromium the test skips and says so; with
// FIELDSYNC_REQUIRE_CHROMIUM=1 (set by .ci/run) it fails instead.
// Screenshots and downloads go to FIELDSYNC_ARTIFACTS (else a temporary
// directory), whose path the test logs.
package hqbrowser
