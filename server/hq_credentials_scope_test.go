package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// An HQ credential reads every change of the city, so only a city
// administrator adds, lists or revokes one, and the audit names the person
// who did.
func TestHQCredentialsAreForACityAdministratorAndAuditedByName(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, _ := e.Admin()
	town := createAccount(t, e, "王芳", testenv.Town)
	city := createAccount(t, e, "李娜", "")

	_, err := admin.AddHQCredential(town, &pb.AddHQCredentialRequest{Name: "hq-town"})
	wantDenied(t, "a town administrator adds an HQ credential", err, "city administrator", `"王芳"`)
	_, err = admin.ListHQCredentials(town, &pb.ListHQCredentialsRequest{})
	wantDenied(t, "a town administrator lists HQ credentials", err, "city administrator")

	if _, err := admin.AddHQCredential(city, &pb.AddHQCredentialRequest{Name: "hq-city"}); err != nil {
		t.Fatalf("a city administrator adds an HQ credential: %v", err)
	}
	_, err = admin.RevokeHQCredential(town, &pb.RevokeHQCredentialRequest{Name: "hq-city"})
	wantDenied(t, "a town administrator revokes an HQ credential", err, "city administrator")
	if _, err := admin.RevokeHQCredential(city, &pb.RevokeHQCredentialRequest{Name: "hq-city"}); err != nil {
		t.Fatalf("a city administrator revokes an HQ credential: %v", err)
	}

	entries, err := e.Store.AuditLog(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, en := range entries {
		if en.Action == "add_hq_credential" || en.Action == "revoke_hq_credential" {
			actors = append(actors, en.Actor)
		}
	}
	if len(actors) != 2 || actors[0] != "admin:李娜" || actors[1] != "admin:李娜" {
		t.Fatalf("HQ credentials audited as %q, want admin:李娜 twice (and nothing for the refused calls)", actors)
	}
}
