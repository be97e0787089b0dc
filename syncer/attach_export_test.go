package syncer

// SetCorruptChunk sets (nil: clears) the hook that alters a chunk's data
// after its hash was computed, as a link that damages bytes would.
func SetCorruptChunk(f func(sha string, off int64, data []byte) []byte) { testCorruptChunk = f }
