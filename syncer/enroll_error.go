package syncer

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// describeEnroll is describe for an enrollment: there is no work on the
// device yet, so it says instead whether the code can be used again and
// what to do.
func describeEnroll(addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if after, ok := retryInfo(st); ok {
		return &enrollWait{&RetryError{After: after, Reason: st.Message()}}
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("server unreachable (%s): nothing was enrolled and the code is still unused; check that this device has a network and that syncd runs at %s, then enroll again with the same code", st.Message(), addr)
	case codes.DeadlineExceeded:
		return fmt.Errorf("server did not answer in time: enroll again with the same code; if the server then says the code was already used, ask the administrator for a new one")
	}
	return describe(err)
}

// enrollWait is a *RetryError (errors.As finds it) told in an enrollment's
// words.
type enrollWait struct{ re *RetryError }

func (e *enrollWait) Error() string {
	return fmt.Sprintf("the server asked to wait %v before enrolling again (%s): nothing was enrolled; enroll again after that with the same code", e.re.After, e.re.Reason)
}

func (e *enrollWait) Unwrap() error { return e.re }
