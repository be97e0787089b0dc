package domain

// The audit log's anchor outside the server's database: syncd publishes
// every audit entry's number and MAC (store.AuditHead, JSON) on
// AuditHeadSubject, in order, to its own JetStream stream beside the
// changelog (the changelog's stream keeps "message n = change n").
const (
	AuditStreamName  = "FIELDSYNC_AUDIT"
	AuditHeadSubject = "fieldsync.audit.head"
)
