package syncer

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// quotaReason is the ErrorInfo reason of a push the server refused because
// the device or its user pushed its daily quota (server.QuotaReason).
const quotaReason = "QUOTA_EXCEEDED"

// isQuota reports whether a refusal is for a daily quota.
func isQuota(st *status.Status) bool {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == quotaReason && ei.GetDomain() == "fieldsync.v1" {
			return true
		}
	}
	return false
}

// quotaWait is what a sync that only pulled because of a daily quota
// returns: the server's refusal, with the wait left.
func (d *Device) quotaWait() error {
	return &RetryError{After: max(d.quotaUntil.Sub(d.opts.Now()), 0), Reason: d.quotaHeld.Reason, Quota: true}
}
