package schema

// Attachment is one file attached to a record, as the device shows it:
// an item of Attachments.
type Attachment struct {
	// SHA256 names the file (64 lowercase hex digits of its SHA-256):
	// FetchAttachment, SaveAttachment and ReadAttachment take it.
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`       // bytes
	MediaType string `json:"media_type"` // image/jpeg, image/png, image/webp, application/pdf
	Caption   string `json:"caption,omitempty"`
	AuthorID  string `json:"author_id"`
	HLC       string `json:"hlc"`
	// State is where the bytes are:
	//   "pending"   attached on this device, waiting to be uploaded (after
	//               the next sync);
	//   "uploading" an upload is under way (or was cut off: it resumes);
	//   "uploaded"  the server holds it; this device keeps its copy;
	//   "remote"    on the server only: FetchAttachment brings it;
	//   "local"     fetched onto this device;
	//   "refused"   the server refused the file for good: Reason says why;
	//               the record and the other files are not held up.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Local says the whole file is on this device (SaveAttachment and
	// ReadAttachment work offline).
	Local bool `json:"local"`
}

// UploadReport is what UploadPending did.
type UploadReport struct {
	Uploaded int `json:"uploaded"` // files the server now holds whole
	Already  int `json:"already"`  // of which it held whole before a byte was sent
	Refused  int `json:"refused"`  // files the server refused for good
	Left     int `json:"left"`     // files still to upload (a cut link, a time limit)
	// Bytes is how many file bytes the server acknowledged.
	Bytes int64 `json:"bytes"`
	// Error is why files were left (the last such error), "" if none.
	Error string `json:"error,omitempty"`
	// Skipped says why nothing was tried ("" when uploads ran): the
	// phone is on a cellular network and upload_only_on_wifi is set, or
	// there is no network.
	Skipped    string `json:"skipped,omitempty"`
	DurationMs int64  `json:"duration_ms"`
}
