package store

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// deviceChanges reads the device health changes after seq.
func deviceChanges(t *testing.T, s *Server, after uint64) []*pb.Change {
	t.Helper()
	rows, err := s.ChangesAfter(context.Background(), after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.Change
	for _, r := range rows {
		c := &pb.Change{}
		if err := proto.Unmarshal(r.Body, c); err != nil {
			t.Fatal(err)
		}
		if c.GetDevice() != nil {
			out = append(out, c)
		}
	}
	return out
}

// A device's health goes on the changelog at a restore, and at a sync
// that changes nothing else once its last health there is an hour old,
// not before; a user's device with no town is in region "none".
func TestDeviceHealthAtRestoreAndHourly(t *testing.T) {
	ctx := context.Background()
	s, err := OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(fn func(*Tx) error) uint64 {
		t.Helper()
		before, _ := s.LastSeq(ctx)
		if err := s.Write(ctx, fn); err != nil {
			t.Fatal(err)
		}
		return before
	}
	before := write(func(tx *Tx) error {
		return tx.PutDevice(&pb.Device{Id: "d1", UserId: "HQ1", Name: "電腦", AppVersion: "2.0"}, "tok")
	})
	if ds := deviceChanges(t, s, before); len(ds) != 1 || ds[0].GetRegion() != "none" || ds[0].GetDeviceId() != "d1" {
		t.Fatalf("enrolment: %v", ds)
	}
	before = write(func(tx *Tx) error { return tx.TouchDevice("d1", 0, 0, "2.0") })
	if ds := deviceChanges(t, s, before); len(ds) != 0 {
		t.Fatalf("a sync with nothing new within the hour: %v", ds)
	}
	if _, err := s.db.W.ExecContext(ctx, "UPDATE devices SET health_ms = health_ms - 3600000"); err != nil {
		t.Fatal(err)
	}
	before = write(func(tx *Tx) error { return tx.TouchDevice("d1", 0, 0, "2.0") })
	if ds := deviceChanges(t, s, before); len(ds) != 1 {
		t.Fatalf("a sync an hour after the last health: %v", ds)
	}
	before = write(func(tx *Tx) error { return tx.TouchDevice("d1", 0, 0, "") })
	if ds := deviceChanges(t, s, before); len(ds) != 0 {
		t.Fatalf("the next sync: %v", ds)
	}
	before = write(func(tx *Tx) error { return tx.MarkRestored("d1", "r2") })
	if ds := deviceChanges(t, s, before); len(ds) != 1 || ds[0].GetDevice().GetRestores() != 1 || ds[0].GetDevice().GetRestoredMs() == 0 {
		t.Fatalf("a restore: %v", ds)
	}
}
