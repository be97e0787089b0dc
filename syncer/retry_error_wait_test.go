package syncer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/syncer"
)

// The wait a refusal asks for is shown as people read it: whole seconds
// (a daily quota's wait is hours), milliseconds below a second.
func TestRetryErrorSaysTheWaitAsPeopleReadIt(t *testing.T) {
	for after, want := range map[time.Duration]string{
		22*time.Hour + 45*time.Minute + 8165305751*time.Nanosecond: "wait 22h45m8s before",
		1500*time.Millisecond + 12345:                              "wait 2s before",
		250*time.Millisecond + 4321:                                "wait 250ms before",
	} {
		if got := (&syncer.RetryError{After: after, Reason: "daily quota"}).Error(); !strings.Contains(got, want) {
			t.Errorf("RetryError{After: %v}: %q, want %q", after, got, want)
		}
	}
}
