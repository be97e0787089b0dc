package backup

import (
	"path/filepath"
	"testing"

	"github.com/benbjohnson/litestream/file"
	"github.com/benbjohnson/litestream/nats"
	"github.com/benbjohnson/litestream/s3"
)

// The files' database goes under the same location: a sub-directory of a
// directory, a deeper prefix of an S3 bucket or a NATS object store (whose
// URL names only the bucket).
func TestSubClient(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{dir, "file://" + dir} {
		c, err := SubClient(u, AttachmentsSub)
		if err != nil {
			t.Fatal(err)
		}
		if fc, ok := c.(*file.ReplicaClient); !ok || fc.Path() != filepath.Join(dir, AttachmentsSub) {
			t.Errorf("%s: %T %v, want a directory client at %s", u, c, c, filepath.Join(dir, AttachmentsSub))
		}
	}
	c, err := SubClient("s3://bucket/fieldsync?region=us-east-1", AttachmentsSub)
	if err != nil {
		t.Fatal(err)
	}
	if sc, ok := c.(*s3.ReplicaClient); !ok || sc.Bucket != "bucket" || sc.Path != "fieldsync/attachments" {
		t.Errorf("s3: %T %+v, want bucket's fieldsync/attachments", c, c)
	}
	c, err = SubClient("nats://127.0.0.1:4222/fieldsync-backup", AttachmentsSub)
	if err != nil {
		t.Fatal(err)
	}
	if nc, ok := c.(*nats.ReplicaClient); !ok || nc.BucketName != "fieldsync-backup" || nc.Path != AttachmentsSub {
		t.Errorf("nats: %T %+v, want bucket fieldsync-backup's attachments", c, c)
	}
	// "" is the location itself.
	c, err = SubClient(dir, "")
	if fc, ok := c.(*file.ReplicaClient); err != nil || !ok || fc.Path() != dir {
		t.Errorf("no sub-path: %v %v", c, err)
	}
}
