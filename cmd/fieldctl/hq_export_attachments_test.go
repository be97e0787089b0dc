package main

import (
	"encoding/json"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The export and tail print a record's files as references (hash, size,
// type, caption, clock, author) in NDJSON and as "sha256 size type" in the
// CSV's attachments column; a record without files has neither.
func TestHQExportAttachmentRefs(t *testing.T) {
	sha1, sha2 := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	r := &pb.Record{Id: "D1", Kind: pb.Kind_KIND_DISPUTE, Version: 3, Attachments: []*pb.Attachment{
		{Sha256: sha1, Size: 2048, MediaType: "image/jpeg", Caption: "人民調解協議書", Hlc: "h1", AuthorId: "U-med"},
		{Sha256: sha2, Size: 99, MediaType: "application/pdf", Hlc: "h2", AuthorId: "U-med"},
	}}
	b, err := json.Marshal(toHQRecordJSON(r))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Attachments []map[string]any `json:"attachments"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Attachments) != 2 || got.Attachments[0]["sha256"] != sha1 || got.Attachments[0]["size"] != float64(2048) ||
		got.Attachments[0]["media_type"] != "image/jpeg" || got.Attachments[0]["caption"] != "人民調解協議書" ||
		got.Attachments[1]["media_type"] != "application/pdf" || got.Attachments[1]["author_id"] != "U-med" {
		t.Errorf("NDJSON attachments: %s", b)
	}
	cells := csvStatusCells(r)
	if want := sha1 + " 2048 image/jpeg; " + sha2 + " 99 application/pdf"; cells[len(cells)-1] != want || csvStatusColumns[len(csvStatusColumns)-1] != "attachments" {
		t.Errorf("CSV attachments cell %q, want %q", cells[len(cells)-1], want)
	}
	none, _ := json.Marshal(toHQRecordJSON(&pb.Record{Id: "V1", Kind: pb.Kind_KIND_VISIT, Version: 1}))
	if strings.Contains(string(none), "attachments") {
		t.Errorf("a record without files: %s", none)
	}
}
