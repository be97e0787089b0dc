package fieldsync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// The error codes. Every error this package returns (gobind turns it into
// a Java exception or an NSError) has a message "<code>: <text>", where
// code is one of these: switch on ErrorCode(message); show the text.
const (
	// CodeRetryLater: the server is unreachable, busy, or the device sent
	// its quota; the work is kept. The text says after how long to try
	// again ("retry after N ms"): RetryAfterMillis.
	CodeRetryLater = "retry_later"
	// CodeOutOfSpace: the phone's disk is full; nothing was written. Free
	// space and try again.
	CodeOutOfSpace = "out_of_space"
	// CodeReenroll: the device is not enrolled (or must enroll again):
	// scan a new code (Enroll).
	CodeReenroll = "reenroll"
	// CodeRevokedWiped: an administrator revoked the device; its local
	// data has been wiped. Enroll again with a new code.
	CodeRevokedWiped = "revoked_wiped"
	// CodeRestoredCopy: this copy of the phone's database was copied or
	// restored onto another phone and the other copy syncs: this one stops,
	// keeps its unsent work, and sends it once enrolled again (Enroll).
	CodeRestoredCopy = "restored_copy"
	// CodeWrongKey: the database was encrypted with another key (or is
	// encrypted and no key was given).
	CodeWrongKey = "wrong_key"
	// CodeInvalid: an argument or a field is wrong; the text names it and
	// says what is allowed.
	CodeInvalid = "invalid"
	// CodeNotFound: no such record on this device.
	CodeNotFound = "not_found"
	// CodeNotAllowed: the user's role may not do this.
	CodeNotAllowed = "not_allowed"
	// CodeWrongServer: the server's certificate is not from the CA pinned
	// at enrollment (or in the scanned code): not the org's server.
	CodeWrongServer = "wrong_server"
	// CodeBadCode: the scanned enrollment code is unusable (malformed,
	// used, expired, cancelled): ask the administrator for a new one.
	CodeBadCode = "bad_code"
	// CodeClosed: the client was closed.
	CodeClosed = "closed"
	// CodeInternal: anything else (a bug, a damaged file); the text says
	// what.
	CodeInternal = "internal"
)

// codes lists every code, for ErrorCode.
var allCodes = []string{CodeRetryLater, CodeOutOfSpace, CodeReenroll, CodeRevokedWiped, CodeRestoredCopy,
	CodeWrongKey, CodeInvalid, CodeNotFound, CodeNotAllowed, CodeWrongServer, CodeBadCode, CodeClosed, CodeInternal}

// ErrorCode returns the code at the start of an error message from this
// package ("retry_later", "invalid", ...), or "" when the message does not
// start with one. Kotlin: ErrorCode(e.message ?: ""); Swift:
// FieldsyncErrorCode(error.localizedDescription).
func ErrorCode(message string) string {
	code, _, ok := strings.Cut(message, ": ")
	if !ok {
		return ""
	}
	for _, c := range allCodes {
		if c == code {
			return c
		}
	}
	return ""
}

// RetryAfterMillis is how long, in milliseconds, a "retry_later" error
// message asks the app to wait before trying again (the "retry after N ms"
// in its text); 0 for any other message.
func RetryAfterMillis(message string) int64 {
	if ErrorCode(message) != CodeRetryLater {
		return 0
	}
	_, rest, ok := strings.Cut(message, retryWords)
	if !ok {
		return 0
	}
	n, _, _ := strings.Cut(rest, " ")
	ms, err := strconv.ParseInt(n, 10, 64)
	if err != nil || ms < 0 {
		return 0
	}
	return ms
}

// retryWords precede the wait in a retry_later message.
const retryWords = "retry after "

// unreachableWait is the wait a retry_later error asks for when the
// server did not say (it could not be reached): WorkManager's and
// BGTaskScheduler's own backoff usually comes later anyway.
const unreachableWait = 30 * time.Second

// codedError is an error with its code; its message is "<code>: <text>".
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.code + ": " + e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func coded(code string, err error) error { return &codedError{code: code, err: err} }

func codef(code, format string, args ...any) error {
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

// errClosed is returned by every call after Close.
var errClosed = codef(CodeClosed, "the client is closed: open it again (Open)")

// retryLater is a retry_later error asking for after.
func retryLater(after time.Duration, err error) error {
	ms := max(after.Milliseconds(), 0)
	return codef(CodeRetryLater, "%s%d ms: %w", retryWords, ms, err)
}

// classify gives err its code; what says what was being done ("sync",
// "enroll", "write", "read", "open") where that decides (an unknown
// server error during an enrollment is a bad code).
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return err
	}
	var (
		retry *syncer.RetryError
		rej   *domain.Rejection
		text  *domain.TextError
		x509u x509.UnknownAuthorityError
		x509h x509.HostnameError
		x509c x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, store.ErrDiskFull) || isDiskFull(err):
		return coded(CodeOutOfSpace, err)
	case errors.Is(err, syncer.ErrWrongKey):
		return coded(CodeWrongKey, err)
	case errors.Is(err, syncer.ErrRevoked):
		return coded(CodeRevokedWiped, err)
	case errors.Is(err, syncer.ErrCloned):
		return coded(CodeRestoredCopy, err)
	case errors.Is(err, syncer.ErrNotEnrolled), errors.Is(err, syncer.ErrUnknownDevice):
		return coded(CodeReenroll, err)
	case errors.Is(err, syncer.ErrWrongServer), errors.As(err, &x509u), errors.As(err, &x509h), errors.As(err, &x509c),
		// Through gRPC the handshake's error arrives as words only.
		strings.Contains(err.Error(), syncer.ErrWrongServer.Error()), strings.Contains(err.Error(), "server certificate: x509:"):
		return coded(CodeWrongServer, err)
	case errors.As(err, &retry):
		return retryLater(retry.After, err)
	case errors.Is(err, syncer.ErrNotFound):
		return coded(CodeNotFound, err)
	case errors.As(err, &rej):
		switch rej.Code {
		case domain.CodePermissionDenied:
			return coded(CodeNotAllowed, err)
		case domain.CodeNotFound:
			return coded(CodeNotFound, err)
		}
		return coded(CodeInvalid, err)
	case errors.As(err, &text), errors.Is(err, syncer.ErrNotMine):
		return coded(CodeInvalid, err)
	case errors.Is(err, context.DeadlineExceeded), unreachable(err):
		return retryLater(unreachableWait, err)
	case what == "enroll":
		return coded(CodeBadCode, err)
	case what == "write" && !isSQLite(err):
		// What syncer refuses before touching the database without a
		// domain.Rejection (an unknown kind, no conflict to settle) is the
		// caller's argument.
		return coded(CodeInvalid, err)
	}
	return coded(CodeInternal, err)
}

// unreachable says err is syncer's word for a server it could not reach
// or that did not answer in time (syncer words these errors without a
// type of their own).
func unreachable(err error) bool {
	m := err.Error()
	return strings.Contains(m, "unreachable") || strings.Contains(m, "did not answer in time")
}
