package main

// What HQ's export and changelog tail carry beyond a record's fields: its
// void and its status history, so that HQ counts from them (cases opened
// and closed, needs resolved, projects completed, each with the server's
// date) and leaves voided records out of every count.
//
// Voided records are always exported, marked: an export after a version
// must hand HQ the void of a record it already holds, or HQ would go on
// counting the copy it has. HQ counts the rows whose voided is 0.

import (
	"fmt"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// hqRecordJSON is a record as fieldctl hq export and hq tail --json print
// it: the device's --json shape without the labels.
type hqRecordJSON struct {
	recordJSON
	// Voided says the record was voided: it counts nowhere.
	Voided  bool          `json:"voided"`
	Void    *voidJSON     `json:"void,omitempty"`
	History []historyJSON `json:"history,omitempty"`
	// Attachments are the record's files as references (hash, size,
	// type, caption): the bytes stay on the server (the HQ page shows them).
	Attachments []attachmentJSON `json:"attachments,omitempty"`
}

// attachmentJSON is a file's reference in the export and tail.
type attachmentJSON struct {
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
	Caption   string `json:"caption,omitempty"`
	HLC       string `json:"hlc"`
	AuthorID  string `json:"author_id"`
}

func toHQRecordJSON(r *pb.Record) *hqRecordJSON {
	out := &hqRecordJSON{recordJSON: *toRecordJSON(r), Voided: r.GetVoid() != nil}
	if v := r.GetVoid(); v != nil {
		out.Void = &voidJSON{Reason: v.GetReason(), HLC: v.GetHlc(), AuthorID: v.GetAuthorId(), AtMs: v.GetAtMs()}
	}
	for _, h := range r.GetHistory() {
		out.History = append(out.History, historyJSON{From: h.GetFrom(), To: h.GetTo(), HLC: h.GetHlc(), AuthorID: h.GetAuthorId(), AtMs: h.GetAtMs()})
	}
	for _, a := range r.GetAttachments() {
		out.Attachments = append(out.Attachments, attachmentJSON{SHA256: a.GetSha256(), Size: a.GetSize(), MediaType: a.GetMediaType(),
			Caption: a.GetCaption(), HLC: a.GetHlc(), AuthorID: a.GetAuthorId()})
	}
	return out
}

// csvStatusColumns follow id, kind, version and author_id in the CSV,
// before the fields:
//
//	voided       1 if the record was voided (count only the rows with 0), else 0
//	void_reason  why, void_by who, voided_at when (the server's time)
//	opened_at    when the record got its first status (dispute, need, project)
//	closed_at    when it last reached a final status: a dispute closed, a
//	             need resolved, a project completed or abandoned
//	attachments  the record's files as references, "sha256 size type" each,
//	             separated by "; " ("" for none): never their bytes
//
// Times are RFC 3339 in UTC, from the server's clock; "" where none.
var csvStatusColumns = []string{"voided", "void_reason", "void_by", "voided_at", "opened_at", "closed_at", "attachments"}

// csvStatusCells are the csvStatusColumns of record r.
func csvStatusCells(r *pb.Record) []string {
	voided := "0"
	if r.GetVoid() != nil {
		voided = "1"
	}
	v := r.GetVoid()
	opened, closed := statusDates(r)
	var files []string
	for _, a := range r.GetAttachments() {
		files = append(files, fmt.Sprintf("%s %d %s", a.GetSha256(), a.GetSize(), a.GetMediaType()))
	}
	return []string{voided, v.GetReason(), v.GetAuthorId(), utcTime(v.GetAtMs()), utcTime(opened), utcTime(closed), strings.Join(files, "; ")}
}

// statusDates returns when r got its first status and when it last reached
// a final one (0: not yet, or r has no status).
func statusDates(r *pb.Record) (opened, closed int64) {
	m := domain.MachineOf(r.GetKind())
	if m == nil {
		return 0, 0
	}
	for _, h := range r.GetHistory() {
		if h.GetFrom() == "" && opened == 0 {
			opened = h.GetAtMs()
		}
		if len(m.Next[h.GetTo()]) == 0 {
			closed = h.GetAtMs()
		}
	}
	return opened, closed
}

func utcTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}
