package domain

import (
	"crypto/rand"
	"encoding/base32"
	"strings"

	"github.com/google/uuid"
)

// NewRecordID returns a new UUIDv7. Time-ordered ids keep SQLite's b-tree
// inserts local, about twice as fast as random UUIDs.
func NewRecordID() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		panic("domain: uuid: " + err.Error())
	}
	return id.String()
}

// IsUUIDv7 reports whether s is a UUIDv7 in canonical lower-case form.
func IsUUIDv7(s string) bool {
	if len(s) != 36 || strings.ToLower(s) != s {
		return false
	}
	u, err := uuid.Parse(s)
	return err == nil && u.Version() == 7 && u.String() == s
}

// IsOrgID reports whether s is an id an administrator may give a unit, user
// or imported household: 1-64 of letters, digits and "_:-", starting with a
// letter or digit. No dots, so an id is always one NATS subject token.
func IsOrgID(s string) bool { return validToken(s, 64) }

// IsRecordID reports whether s may name a record: a UUIDv7 made on a device
// or an imported household's org id.
func IsRecordID(s string) bool { return IsUUIDv7(s) || IsOrgID(s) }

func validToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RandomToken returns n random bytes in lower-case base32, for device ids,
// credentials and enrollment codes.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("domain: random: " + err.Error())
	}
	return b32.EncodeToString(b)
}
