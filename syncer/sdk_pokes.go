package syncer

import "context"

// Pokes keeps a poke stream open to the server, as Run does, until ctx
// ends: the channel gets a signal (at most one waiting) each time the
// server says something in the device's scope changed. For an embedding
// that runs its own loop around Sync (the phone SDK, mobile/fieldsync,
// which tells the app what each sync did). It returns at once; the stream
// reconnects with backoff.
func (d *Device) Pokes(ctx context.Context) <-chan struct{} {
	pokes := make(chan struct{}, 1)
	go d.watch(ctx, pokes)
	return pokes
}
