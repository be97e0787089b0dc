package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// The audit log's anchor outside the server's database: syncd publishes
// every audit entry's number and MAC (store.AuditHead, JSON) on
// AuditHeadSubject, in order, to its own JetStream stream beside the
// changelog (the changelog's stream keeps "message n = change n").
const AuditStreamName = "FIELDSYNC_AUDIT"

// AuditHeadSubject is the subject of the audit heads, secret with the
// audit key: "fieldsync.audit.<32 hex digits of HMAC-SHA256(key)>.head".
// An HQ user may create a push consumer on the changelog delivering to any
// subject it names (NATS cannot check a consumer's deliver subject against
// permissions); were the subject known, the stream of audit heads would
// store those deliveries. Without the key the subject cannot be named. No
// key (a store without one): "fieldsync.audit.head".
func AuditHeadSubject(key []byte) string {
	if len(key) == 0 {
		return "fieldsync.audit.head"
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("fieldsync audit head subject"))
	return "fieldsync.audit." + hex.EncodeToString(m.Sum(nil))[:32] + ".head"
}
