package domain

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Administrators (AdminService) are people, each with an account: a name
// and a scope. The owner credential (syncd's admin.token) is the city-wide
// account named OwnerAccount that exists without a row in the database.
//
//	scope  may                                                         may not
//	city   everything: import the org, manage administrator accounts,  -
//	       assign, codes, devices and export anywhere
//	town   assign households, issue codes, list and revoke devices     import the org (it is city-wide), export,
//	       of users and households that lie in its town                manage accounts, act outside its town
//
// A user or household "lies in" the town of its unit; HQ users have no
// town and so only city administrators act on them.
const OwnerAccount = "owner"

// AdminScope is what an administrator account may act on: the whole city
// (TownID empty) or one town.
type AdminScope struct {
	TownID string
}

// City reports whether the scope is the whole city.
func (s AdminScope) City() bool { return s.TownID == "" }

// String is "city" or "town T01".
func (s AdminScope) String() string {
	if s.City() {
		return "city"
	}
	return "town " + s.TownID
}

// AdminMayAct reports whether an administrator with scope s may act on
// something lying in townID ("" for what lies in no town: HQ users).
func AdminMayAct(s AdminScope, townID string) bool {
	return s.City() || (townID != "" && townID == s.TownID)
}

// AdminActor is the audit log's actor for an administrator's action:
// "admin:<account name>", so that an administrator cannot be taken for a
// device (whose actor is its id) and the owner is "admin:owner".
func AdminActor(account string) string { return "admin:" + account }

// MaxAdminNameChars bounds an account name, in characters.
const MaxAdminNameChars = 64

// CheckAdminName says what is wrong with an administrator account's name
// ("" if nothing): a person's name or login, 1 to 64 printable characters
// (any script: 王芳, wang.fang), single inner spaces allowed, not "owner".
func CheckAdminName(name string) string {
	switch {
	case name == "":
		return "required: the person's name or login, e.g. 王芳 or wang.fang"
	case !utf8.ValidString(name):
		return "not valid UTF-8 text"
	case utf8.RuneCountInString(name) > MaxAdminNameChars:
		return fmt.Sprintf("%d characters is too long: at most %d", utf8.RuneCountInString(name), MaxAdminNameChars)
	case strings.EqualFold(name, OwnerAccount):
		return fmt.Sprintf("%q is the owner credential's name (admin.token): choose the person's own name", name)
	case strings.TrimSpace(name) != name:
		return "starts or ends with a space: remove it"
	case strings.Contains(name, "  "):
		return "has two spaces in a row: use one"
	}
	for i, r := range name {
		// unicode.IsPrint is letters, marks, digits, punctuation, symbols
		// and the ASCII space: no control characters, no bidi overrides or
		// other invisible format characters, no other spaces.
		if !unicode.IsPrint(r) {
			return fmt.Sprintf("character %U at byte %d is not printable: use letters, digits, punctuation and single spaces", r, i)
		}
	}
	return ""
}
