package main

import (
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// TestImportRetiredColumn: households.csv may carry a "retired" column;
// a reason there retires (voids) the household, an empty one leaves the
// household as it is, and files without the column still import.
func TestImportRetiredColumn(t *testing.T) {
	e := testenv.Start(t)
	tok := tokenFile(t, e)
	ok(t, admin(e, tok, "import", "-dir", orgDir)...) // no retired column
	dir := copyOrg(t)
	writeFile(t, filepath.Join(dir, "households.csv"), "id,grid_id,head,retired\n"+
		"H0001,G01,周大海,全家遷往武漢\n"+
		"H0002,G01,周金枝,\n")
	ok(t, admin(e, tok, "import", "-dir", dir)...)
	for id, want := range map[string]string{"H0001": "全家遷往武漢", "H0002": ""} {
		r, err := e.Store.Record(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetVoid().GetReason(); got != want {
			t.Errorf("%s retired for %q, want %q", id, got, want)
		}
	}
}
