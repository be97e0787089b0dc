package syncer

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// An enrollment code as the administrator hands it out carries everything
// a phone needs to reach its server safely, with no other set-up:
//
//	fieldsync://HOST:PORT/CODE?ca=SHA256-OF-THE-SERVER'S-CA
//
// The device connects over TLS and accepts only a certificate chain that
// leads to the CA with that fingerprint (pinning); it keeps the pin for
// every later connection. A development server running in plain text
// (loopback only) hands out fieldsync+plaintext://HOST:PORT/CODE.
const (
	schemeTLS       = "fieldsync"
	schemePlaintext = "fieldsync+plaintext"
)

// FormatEnrollment builds the enrollment code for a one-time code issued by
// the server at addr whose CA has the given fingerprint ("" for a
// plain-text development server).
func FormatEnrollment(addr, code, caFingerprint string) string {
	if caFingerprint == "" {
		return schemePlaintext + "://" + addr + "/" + code
	}
	return schemeTLS + "://" + addr + "/" + code + "?ca=" + caFingerprint
}

// Enrollment is a parsed enrollment code.
type Enrollment struct {
	Addr      string // host:port
	Code      string // the one-time secret
	CA        string // the pinned CA fingerprint; "" for plain text
	Plaintext bool
}

// ParseEnrollment reads an enrollment code made by FormatEnrollment.
func ParseEnrollment(s string) (*Enrollment, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != schemeTLS && u.Scheme != schemePlaintext) {
		return nil, fmt.Errorf("enrollment code: want fieldsync://HOST:PORT/CODE?ca=FINGERPRINT as fieldctl admin enroll-code prints it")
	}
	e := &Enrollment{Addr: u.Host, Code: strings.Trim(u.Path, "/"), Plaintext: u.Scheme == schemePlaintext, CA: strings.ToLower(u.Query().Get("ca"))}
	if _, _, err := net.SplitHostPort(e.Addr); err != nil {
		return nil, fmt.Errorf("enrollment code: server address %q: want HOST:PORT", e.Addr)
	}
	if e.Code == "" {
		return nil, errors.New("enrollment code: the code part after the address is missing")
	}
	if !e.Plaintext {
		if b, err := hex.DecodeString(e.CA); err != nil || len(b) != sha256.Size {
			return nil, errors.New("enrollment code: ca= must be the 64 hex digits of the server CA's SHA-256 fingerprint")
		}
	} else if !isLoopback(e.Addr) {
		return nil, fmt.Errorf("enrollment code: plain text is allowed only to a loopback server, not %s", e.Addr)
	}
	return e, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ErrWrongServer is returned when a server's certificate does not lead to
// the pinned CA.
var ErrWrongServer = errors.New("the server's certificate is not from the CA this device pinned at enrollment: it is not your fieldsync server (or the server was reinstalled without its CA); ask your administrator")

// PinnedTLS is the TLS config of a device that pinned the CA with
// fingerprint fp: the server's chain must contain that CA, and the server's
// certificate must be valid under it for the host it was dialled as.
// (A Device also checks against the CA certificate it kept, and resumes
// sessions: tls_ca.go.)
func PinnedTLS(addr, fp string) *tls.Config {
	return deviceTLS(addr, fp, nil, nil, nil)
}

// CAFingerprintFile returns the fingerprint of the CA certificate in a PEM
// file (syncd keeps its CA in <data>/tls/ca.pem): what enrollment codes
// carry.
func CAFingerprintFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: not a PEM certificate", path)
	}
	return fingerprint(blk.Bytes), nil
}
