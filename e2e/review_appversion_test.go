package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// Review (session 8): an app upgraded and restarted within a minute of its
// last sync sends its new version on the first call of the new connection
// only. That call pushed nothing, so the server (touchDue) wrote nothing
// and dropped the version; every later call sends "" ("keep the last"),
// so the device list never showed the new version while the connection
// lived. The server now writes a call whose version is not the one it
// last wrote for the device.
func TestReviewAppVersionLostOnPullOnlyFirstCall(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	path := filepath.Join(t.TempDir(), "device.db")
	d, err := syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, AppVersion: "app/1.0", Key: phoneKey(path)})
	ok(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok(t, d.Enroll(ctx, e.Code(testenv.Member), "phone"))
	testenv.Sync(t, d) // touches the device: the next pull-only call within a minute writes nothing
	ok(t, d.Close())

	// The app is upgraded and restarted.
	d, err = syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, AppVersion: "app/2.0", Key: phoneKey(path)})
	ok(t, err)
	defer d.Close()
	testenv.Sync(t, d) // first call on the new connection: carries app/2.0, pull only
	_, err = d.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20").Set("needs", "屋頂漏水"))
	ok(t, err)
	testenv.Sync(t, d) // a push: written, but with app_version ""

	admin, actx := e.Admin()
	resp, err := admin.ListDevices(actx, &pb.ListDevicesRequest{UserId: testenv.Member})
	ok(t, err)
	if len(resp.GetDevices()) != 1 {
		t.Fatalf("%d devices, want 1", len(resp.GetDevices()))
	}
	if got := resp.GetDevices()[0].GetAppVersion(); got != "app/2.0" {
		t.Errorf("device list shows app version %q after the upgrade and two syncs, want app/2.0", got)
	}
}
