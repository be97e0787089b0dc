package server

import "testing"

// SmallExportBatches bounds export messages to bytes of record bodies and
// records records until the test ends, so that a small database is
// exported in many messages. Call it before starting the server.
func SmallExportBatches(t testing.TB, bytes, records int) {
	b, r := exportBatchBytes, exportBatchRecords
	exportBatchBytes, exportBatchRecords = bytes, records
	t.Cleanup(func() { exportBatchBytes, exportBatchRecords = b, r })
}
