// Package web serves the HQ page: sign-in with one-time codes, sessions in
// secure HttpOnly cookies, server-rendered pages (Simplified Chinese
// first, English), CSV and XLSX downloads, all assets inside the binary.
//
// Routes: GET /signin and POST /signin (person id + one-time code → the
// session cookie fieldsync_hq), POST /signout, GET / (→ /p/coverage),
// GET /p/{name}?... (a page of package report: tables, numbers linking to
// their rows, charts as inline SVG), GET /p/{name}.csv?table=i and .xlsx
// (a table of that page), GET /static/... (the stylesheet). ?lang=zh|en
// is remembered in a cookie; ?month=YYYY-MM picks the month.
//
// Who signs in: people of the read model with role hq (the whole city) or
// secretaries whose unit is a town (that town only: report.Query.Town).
// Codes come from IssueCode (fieldctl hq signin-code): 10 letters of a
// base32 alphabet without look-alikes, good for 24 hours by default, used
// once, stored as a SHA-256 hash. MaxFailures failed sign-ins per person or
// per remote address within FailureWindow lock sign-in for them for the
// rest of the window. Sessions: 32 random bytes, stored hashed, SessionTTL
// long; a disabled person's sessions stop at their next request. Forms
// carry a CSRF token (the session's, or a double-submit cookie for
// sign-in); every answer carries a strict CSP and no-frame, no-sniff,
// no-referrer headers.
//
// The web database (Config.WebDB, apart from the model so a model rebuild
// keeps it) holds codes, sessions, failures and the audit: every sign-in
// (ok or failed, and why), sign-out, code issued, refusal (a page or
// download outside the person's town) and download (page, table, format,
// query); Audit lists it.
package web
