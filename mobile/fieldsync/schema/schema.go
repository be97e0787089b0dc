// Package schema holds the JSON shapes that cross the phone SDK's boundary
// (package fieldsync): the Go structs are the schema, their json tags the
// names a Kotlin or Swift app reads. README's "The phone SDK" has the same
// table. It is a package of its own because gobind would skip the maps and
// slices of structs these shapes need; fieldsync's bound surface carries
// them as JSON strings.
//
// Stability: names are never renamed or retyped; new names may be added,
// so an app's parser must ignore names it does not know.
package schema

// Options is Open's optionsJSON ("" or "{}" = defaults).
type Options struct {
	// AppVersion is sent to the server and shown in the device list
	// (default "fieldsync-go/0.1").
	AppVersion string `json:"app_version,omitempty"`
	// PageSize is how many records one sync page asks for: 1..5000
	// (default 500).
	PageSize int `json:"page_size,omitempty"`
	// ConnectTimeoutMs bounds the wait for a connection: 100..120000
	// (default 5000).
	ConnectTimeoutMs int64 `json:"connect_timeout_ms,omitempty"`
	// ForegroundIntervalMs is how often foreground mode syncs when nothing
	// else (a local write, a poke from the server) makes it sync:
	// 1000..86400000 (default 300000, five minutes).
	ForegroundIntervalMs int64 `json:"foreground_interval_ms,omitempty"`
	// FetchOnlyOnWifi: FetchAttachment fails with retry_later while the
	// app says the phone is on a cellular network (SetNetwork).
	FetchOnlyOnWifi bool `json:"fetch_only_on_wifi,omitempty"`
	// UploadOnlyOnWifi: files attached on this phone are uploaded only
	// while the app says it is on Wi-Fi (or has not said); records sync
	// on any network.
	UploadOnlyOnWifi bool `json:"upload_only_on_wifi,omitempty"`
}

// Record is one record as the device shows it: Get's answer, and each item
// of List, VillageNeeds (and, with more names, of MyHouseholds and
// MyOpenCases).
type Record struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // household, visit, dispute, event, need, project
	// State: "synced" (the server's version), "pending" (local changes not
	// yet acknowledged), "rejected" (the server refused a change for good:
	// see Reason and Rejections), "conflict" (a concurrent change is kept
	// for a person to settle: see Conflicts).
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"` // why rejected, or how many conflicts
	// Version is the server's version of the record, 0 until the server
	// has sent it.
	Version        int64  `json:"version"`
	AuthorID       string `json:"author_id"`
	OriginDeviceID string `json:"origin_device_id,omitempty"`
	// Status is fields["status"] (disputes, needs, projects), "" otherwise.
	Status string `json:"status,omitempty"`
	// Fields holds every field that has a value (kinds and fields: the
	// domain package's kinds.go; README's table).
	Fields map[string]string `json:"fields"`
	// Voided says the record was voided (a duplicate, a mistake): it is
	// shown marked and counts nowhere. Void says why and by whom.
	Voided bool  `json:"voided"`
	Void   *Void `json:"void,omitempty"`
	// ConflictCount is how many losing values the record keeps.
	ConflictCount int `json:"conflict_count"`
	// CreatedMs is when the server applied the record's creation (ms since
	// the epoch), or when this device made it while it is not yet synced.
	CreatedMs int64 `json:"created_ms"`

	// Get only (lists leave them out):

	// Entries are the appended texts of list fields (a dispute's notes and
	// sessions, a need's notes, a project's progress), in clock order.
	Entries []Entry `json:"entries,omitempty"`
	// Conflicts are the losing values, each with why it lost.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// History is every status change from the creation on.
	History []StatusChange `json:"history,omitempty"`
}

// Void says who voided a record, when and why.
type Void struct {
	Reason   string `json:"reason"`
	AuthorID string `json:"author_id"`
	AtMs     int64  `json:"at_ms"` // 0 until the server's record comes back
}

// Entry is one appended text of a list field.
type Entry struct {
	Field    string `json:"field"`
	Text     string `json:"text"`
	AuthorID string `json:"author_id"`
	HLC      string `json:"hlc"`
}

// Conflict is one losing value of a record's field.
type Conflict struct {
	Field    string `json:"field"`
	Value    string `json:"value"`
	AuthorID string `json:"author_id"`
	HLC      string `json:"hlc"`
	Reason   string `json:"reason"`
}

// StatusChange is one move of a record's status ("" → first status is the
// creation).
type StatusChange struct {
	From     string `json:"from"`
	To       string `json:"to"`
	AuthorID string `json:"author_id"`
	AtMs     int64  `json:"at_ms"` // 0 until the server's record comes back
	HLC      string `json:"hlc"`
}

// Query is List's queryJSON.
type Query struct {
	// Kind: household, visit, dispute, event, need, project, or "" for all.
	Kind string `json:"kind,omitempty"`
	// Fields keeps the records whose field equals the value, for every
	// pair (e.g. {"household_id":"H-1"}, {"status":"open"}); "" matches a
	// field with no value.
	Fields map[string]string `json:"fields,omitempty"`
	// State: synced, pending, rejected, conflict, or "" for any.
	State string `json:"state,omitempty"`
	// Voided: "exclude" (the default, also ""), "include", "only".
	Voided string `json:"voided,omitempty"`
	// Offset is how many matching records to skip (>= 0); Limit how many
	// to return: 1..500, 0 = 50. Records come by id.
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
}

// Page is one page of a list: List, MyHouseholds, MyOpenCases,
// VillageNeeds.
type Page[T any] struct {
	Items  []T  `json:"items"` // never null: [] when empty
	Total  int  `json:"total"` // matching records in all
	Offset int  `json:"offset"`
	Limit  int  `json:"limit"`
	More   bool `json:"more"` // Offset+len(Items) < Total
}

// Household is an item of MyHouseholds: the household and its visits in
// the month asked.
type Household struct {
	Record
	// Due says the household has no visit in the month (voided visits do
	// not count).
	Due bool `json:"due"`
	// VisitsInMonth counts its visits in the month; LastVisitOn is the
	// date (YYYY-MM-DD) of its latest visit ever, "" if none.
	VisitsInMonth int    `json:"visits_in_month"`
	LastVisitOn   string `json:"last_visit_on"`
}

// Case is an item of MyOpenCases: an open dispute and its age.
type Case struct {
	Record
	// AgeDays is whole days since the dispute was opened (CreatedMs), by
	// the device's clock.
	AgeDays int `json:"age_days"`
}

// ConflictItem is one field of one record in conflict: an item of
// Conflicts.
type ConflictItem struct {
	RecordID string `json:"record_id"`
	Kind     string `json:"kind"`
	Field    string `json:"field"`
	// Voided: the record was voided meanwhile; it takes no settle.
	Voided bool `json:"voided"`
	// Pending: this device's own settle or edit waits to be sent.
	Pending  bool            `json:"pending"`
	Standing ConflictValue   `json:"standing"`
	Losing   []ConflictValue `json:"losing"`
	// Mine is the value this device's user wrote among them (what
	// KeepMine keeps); HasMine is false when none is theirs.
	Mine    string `json:"mine"`
	HasMine bool   `json:"has_mine"`
}

// ConflictValue is one value of a field in conflict.
type ConflictValue struct {
	Value    string `json:"value"`
	AuthorID string `json:"author_id"` // "" when the device cannot tell
	HLC      string `json:"hlc"`
	Reason   string `json:"reason"` // why it lost; "" for the standing value
}

// Rejection is a write the server refused for good, kept on the device:
// an item of Rejections.
type Rejection struct {
	Seq      int64  `json:"seq"`
	RecordID string `json:"record_id"`
	Kind     string `json:"kind"`
	Op       string `json:"op"` // create, update, transition, append, void, settle, attach
	Code     string `json:"code"`
	Field    string `json:"field"`
	Reason   string `json:"reason"`
}

// Identity is who the device is: Identity's answer.
type Identity struct {
	Server        string `json:"server"`
	DeviceID      string `json:"device_id"`
	UserID        string `json:"user_id"`
	UserName      string `json:"user_name"`
	Role          string `json:"role"` // member, mediator, secretary, hq
	VillageID     string `json:"village_id"`
	CAFingerprint string `json:"ca_fingerprint"` // "" for a plain-text server
}

// Status is Status's answer and what OnSyncState is given.
type Status struct {
	Enrolled bool `json:"enrolled"`
	// Identity is null when not enrolled.
	Identity *Identity `json:"identity"`
	Pending  int       `json:"pending"`  // writes waiting to be sent
	Rejected int       `json:"rejected"` // writes refused, kept for the user
	Records  int       `json:"records"`
	// Conflicts counts the records with conflicts to settle.
	Conflicts  int   `json:"conflicts"`
	LastSyncMs int64 `json:"last_sync_ms"` // 0 = never
	// LastError is the last sync's error ("" if it succeeded), and
	// LastErrorCode its code (see the error codes).
	LastError     string `json:"last_error"`
	LastErrorCode string `json:"last_error_code"`
	// Notice is what the user should know of the last time this phone's
	// numbering was set right (restored from an older copy, or the server
	// restored from a backup).
	Notice string `json:"notice"`
	// Stopped: "cloned" when this copy syncs no more, "unknown" when the
	// server does not know this phone any more (restored from an older
	// backup): enroll again in both cases (the work is kept and sent); or "".
	Stopped string `json:"stopped"`
	// Syncing says a sync is running now; Foreground that foreground mode
	// is on.
	Syncing    bool `json:"syncing"`
	Foreground bool `json:"foreground"`
	// FilesPending counts the files attached on this phone waiting for
	// their upload; FilesRefused those the server refused (Attachments
	// says why).
	FilesPending int `json:"files_pending"`
	FilesRefused int `json:"files_refused"`
}

// Report is what one sync did: SyncOnce's answer, and Change.Report.
type Report struct {
	Pushed     int   `json:"pushed"`    // writes the server answered
	Applied    int   `json:"applied"`   // of which applied (conflicts included)
	Conflicts  int   `json:"conflicts"` // of which met a concurrent change
	Rejected   int   `json:"rejected"`  // of which refused for good
	Pulled     int   `json:"pulled"`    // records received
	Purged     int   `json:"purged"`    // records removed: they left the user's scope
	Refetched  int   `json:"refetched"` // buckets read again from the start
	Calls      int   `json:"calls"`     // round trips
	DurationMs int64 `json:"duration_ms"`
	// Changed says the sync changed what the device shows.
	Changed bool `json:"changed"`
	// Files is what the uploads after the records did; absent when there
	// was no file to upload (or the sync failed, or upload_only_on_wifi
	// held them).
	Files *UploadReport `json:"files,omitempty"`
}

// Change is what OnDataChanged is given.
type Change struct {
	// Source: "write" (a local write through this client) or "sync".
	Source string `json:"source"`
	// For a write: the operation (create, update, transition, append,
	// void, settle, assign, attach) and the record.
	Op       string `json:"op,omitempty"`
	RecordID string `json:"record_id,omitempty"`
	Kind     string `json:"kind,omitempty"`
	// For a sync: what it did.
	Report *Report `json:"report,omitempty"`
}
