package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: servers,
// relays, watchers and client connections must all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
