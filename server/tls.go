package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// TLS files syncd keeps in <data>/tls. The CA is made once and never
// changes, because devices pin its fingerprint at enrollment; the server
// certificate is remade from it whenever the host names it must cover
// change.
const (
	CAFile        = "ca.pem"
	caKeyFile     = "ca-key.pem"
	serverFile    = "server.pem"
	serverKeyFile = "server-key.pem"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, in hex: what an
// enrollment code carries and a device pins.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateTLS returns the server's TLS config from dir, making a CA
// and a server certificate for hosts (IP addresses or DNS names) on first
// use, and the CA's fingerprint.
func LoadOrCreateTLS(dir string, hosts []string) (*tls.Config, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("tls dir: %w", err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, "", err
	}
	leaf, err := loadServerCert(dir, serverFile, serverKeyFile, ca, hosts)
	if err != nil {
		if leaf, err = createServerCert(dir, serverFile, serverKeyFile, ca, caKey, hosts); err != nil {
			return nil, "", err
		}
	}
	tickets, err := loadTicketKeys(filepath.Join(dir, ticketKeysFile), time.Now)
	if err != nil {
		return nil, "", err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: certificateFor(leaf)}
	tickets.install(cfg)
	return cfg, Fingerprint(ca.Raw), nil
}

// ALPNHoldsCA is the protocol name a device offers beside "h2" when it
// kept syncd's CA certificate at enrollment (syncer/tls_ca.go): syncd then
// sends its certificate alone, without the CA it would otherwise append
// (about 500 bytes of a handshake on a 2G link). The protocol chosen stays
// "h2": syncd's gRPC offers only that.
const ALPNHoldsCA = "fieldsync-ca"

// certificateFor picks what syncd sends in a handshake: the certificate
// alone to a device that says it holds the CA, the certificate and the
// CA to anyone else (a device enrolled before devices kept the CA, whose
// pin is checked against the CA in the chain; fieldctl; a browser on the
// HQ page).
func certificateFor(chain tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	leafOnly := chain
	leafOnly.Certificate = chain.Certificate[:1]
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(hello.SupportedProtos, ALPNHoldsCA) {
			return &leafOnly, nil
		}
		return &chain, nil
	}
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readPEM(path, kind string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != kind {
		return nil, fmt.Errorf("%s: not a PEM %s", path, kind)
	}
	return blk.Bytes, nil
}

func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKeyFile)
	der, err := readPEM(certPath, "CERTIFICATE")
	if err == nil {
		keyDER, err := readPEM(keyPath, "EC PRIVATE KEY")
		if err != nil {
			return nil, nil, fmt.Errorf("CA key: %w (the CA certificate exists without its key: restore %s from backup; making a new CA would cut off every enrolled device)", err, keyPath)
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(keyDER)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
		}
		return ca, key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "fieldsync syncd CA", Organization: []string{"fieldsync"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make CA: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// loadServerCert loads the server certificate if it was made by ca, covers
// every host and is not near expiry.
func loadServerCert(dir, certFile, keyFile string, ca *x509.Certificate, hosts []string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return cert, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, err
	}
	if leaf.CheckSignatureFrom(ca) != nil || time.Until(leaf.NotAfter) < 30*24*time.Hour {
		return cert, errors.New("server certificate stale")
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return cert, fmt.Errorf("server certificate does not cover %s", h)
		}
	}
	cert.Certificate = append(cert.Certificate[:1], ca.Raw) // send the CA too: devices pin it
	return cert, nil
}

func createServerCert(dir, certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "fieldsync syncd", Organization: []string{"fieldsync"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(filepath.Join(dir, keyFile), "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(filepath.Join(dir, certFile), "CERTIFICATE", der, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}
