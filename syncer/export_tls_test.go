package syncer

import (
	"context"
	"crypto/tls"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// TLSState makes one call (a one-record pull, not adopted) on the
// device's connection, dialled as a sync dials it, and returns the TLS
// state of the connection it went on.
func (d *Device) TLSState(ctx context.Context) (tls.ConnectionState, error) {
	id, err := d.Identity()
	if err != nil {
		return tls.ConnectionState{}, err
	}
	var token string
	if err := d.db.View(ctx, func(tx *store.RTx) error { token, err = tx.Meta(metaToken); return err }); err != nil {
		return tls.ConnectionState{}, err
	}
	d.mu.Lock()
	conn, err := d.dial(id.Server, id.CAFingerprint)
	d.mu.Unlock()
	if err != nil {
		return tls.ConnectionState{}, err
	}
	var p peer.Peer
	if _, err := pb.NewSyncServiceClient(conn).Sync(d.authed(ctx, token), &pb.SyncRequest{PageSize: 1, ChangedCursorsOnly: true}, grpc.Peer(&p)); err != nil {
		return tls.ConnectionState{}, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, errors.New("not a TLS connection")
	}
	return info.State, nil
}

// ForgetTLS removes what the replica keeps of TLS: the CA certificate
// (ca) and the session to resume (session), as on a replica from before
// devices kept them.
func (d *Device) ForgetTLS(ca, session bool) error {
	return d.db.Update(context.Background(), func(tx *store.RTx) error {
		if ca {
			if err := tx.SetMeta(metaCACert, ""); err != nil {
				return err
			}
		}
		if session {
			return tx.SetMeta(metaSession, "")
		}
		return nil
	})
}

// HoldsCA says whether the replica keeps the CA certificate.
func (d *Device) HoldsCA() (bool, error) {
	var der []byte
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		var err error
		der, err = heldCA(tx)
		return err
	})
	return der != nil, err
}
