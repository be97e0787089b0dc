// Package web serves the HQ page: sign-in with one-time codes, sessions in
// secure HttpOnly cookies, server-rendered pages (Simplified Chinese
// first, English), CSV and XLSX downloads, all assets inside the binary.
package web
