package syncer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"

	"github.com/fieldsync/fieldsync/store"
)

// On a 2G link every byte of a handshake costs: a device keeps the CA
// certificate it saw at enrollment (its fingerprint is the pin) in the
// replica's meta, and says so by offering alpnHoldsCA beside "h2"; syncd
// then sends its own certificate alone (server/tls.go certificateFor). A
// device enrolled before this (no CA kept) offers only "h2", gets the
// chain as before, checks the pin on it, and keeps the CA from then on.
const (
	// alpnHoldsCA is server.ALPNHoldsCA (syncer does not import server);
	// syncer's TLS tests show the two agree.
	alpnHoldsCA = "fieldsync-ca"
	// metaCACert is the pinned CA's certificate (DER, base64), kept at the
	// first handshake whose chain showed it.
	metaCACert = "tls_ca_cert"
)

// deviceTLS is the TLS config of a device that pinned the CA with
// fingerprint fp. held is the CA's certificate if the device kept it (nil
// otherwise, or when it is not the pinned one): the device then offers
// alpnHoldsCA and checks the server's certificate against it. Without it
// the CA must come in the chain, and learned (if not nil) is given its
// DER once the check passed. sessions, if not nil, keeps TLS sessions to
// resume.
func deviceTLS(addr, fp string, held []byte, sessions tls.ClientSessionCache, learned func(der []byte)) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	var heldCA *x509.Certificate
	if held != nil && fingerprint(held) == fp {
		heldCA, _ = x509.ParseCertificate(held)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The default verification wants a system root; ours is the pin.
		// VerifyConnection below does the whole check instead, on full
		// handshakes and on resumed ones (crypto/tls gives it the
		// certificates the session was made with).
		InsecureSkipVerify: true,
		ClientSessionCache: sessions,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrWrongServer
			}
			ca := heldCA
			inChain := false
			for _, c := range cs.PeerCertificates {
				if fingerprint(c.Raw) == fp {
					ca, inChain = c, true
				}
			}
			if ca == nil {
				if cs.DidResume {
					// A session from a handshake that sent the certificate
					// alone, and the replica lost the CA it was checked
					// against. crypto/tls forgets a session whose
					// resumption failed: the next attempt gets the chain.
					return errors.New("TLS session resumed without the CA it was checked against: the next attempt makes a full handshake")
				}
				return ErrWrongServer
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
				var unknown x509.UnknownAuthorityError
				if !inChain && errors.As(err, &unknown) {
					// Checked against the kept CA: not made by it.
					return fmt.Errorf("%w (%v)", ErrWrongServer, err)
				}
				return fmt.Errorf("server certificate: %w", err)
			}
			if inChain && heldCA == nil && learned != nil {
				learned(ca.Raw)
			}
			return nil
		},
	}
	if heldCA != nil {
		// grpc adds "h2" when it is missing; it comes first so that a
		// server that knows no hint still picks it.
		cfg.NextProtos = []string{"h2", alpnHoldsCA}
	}
	return cfg
}

// heldCA returns the CA certificate the replica keeps (nil if none).
func heldCA(tx *store.RTx) ([]byte, error) {
	s, err := tx.Meta(metaCACert)
	if err != nil || s == "" {
		return nil, err
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, nil // damaged: the chain brings it again
	}
	return der, nil
}

// keepCA stores the pinned CA's certificate a handshake showed. Best
// effort: it runs inside the handshake, which must not fail for it, and a
// device that could not keep it gets the chain again next time.
func (d *Device) keepCA(der []byte) {
	d.db.Update(context.Background(), func(tx *store.RTx) error {
		return tx.SetMeta(metaCACert, base64.StdEncoding.EncodeToString(der))
	})
}
