package web

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/hq/report"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

const (
	langCookie   = "fieldsync_lang"
	signinCookie = "fieldsync_hq_signin" // double-submit token of the sign-in form
)

// china is the time zone months and retry times are shown in.
var china = time.FixedZone("CST", 8*3600)

// Config configures the HQ page.
type Config struct {
	Model  *sql.DB      // the read model's DB (report queries)
	WebDB  string       // path of the web's own SQLite (codes, sessions, audit): survives a model rebuild
	Secure bool         // cookies Secure (true whenever served over TLS)
	Log    *slog.Logger // nil: slog.Default()
	Now    func() time.Time
	// Files reads attached files' bytes (syncd fills it from its store);
	// nil: the page lists files but cannot show them (fieldctl hq web on
	// its own).
	Files Files
}

// Server is the HQ page.
type Server struct {
	cfg  Config
	db   *sql.DB
	tmpl *template.Template
	mux  *http.ServeMux

	thumbs thumbCache
}

// New opens (creating) the web database and builds the page.
func New(cfg Config) (*Server, error) {
	if cfg.Model == nil {
		return nil, errors.New("web: Config.Model: the read model's database is nil")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tmpl, err := template.ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	db, err := openWebDB(context.Background(), cfg.WebDB)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, db: db, tmpl: tmpl, mux: http.NewServeMux()}
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	s.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			s.fail(w, r, nil, http.StatusNotFound, msg(s.lang(w, r), "err_404"))
			return
		}
		files.ServeHTTP(w, r)
	})
	s.mux.HandleFunc("GET /signin", s.signinForm)
	s.mux.HandleFunc("POST /signin", s.signin)
	s.mux.HandleFunc("POST /signout", s.signout)
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, withLang("/p/coverage", s.lang(w, r)), http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET /p/{name}", s.page)
	s.mux.HandleFunc("GET /f/{record}/{sha}", s.file(false))
	s.mux.HandleFunc("GET /f/{record}/{sha}/thumb", s.file(true))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusNotFound, msg(s.lang(w, r), "err_404"))
	})
	return s, nil
}

// Handler is the page's HTTP handler, security headers on every answer.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if s.cfg.Secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		s.mux.ServeHTTP(w, r)
	})
}

// Close closes the web database.
func (s *Server) Close() error { return s.db.Close() }

// lang is the language asked for: ?lang= (remembered in a cookie), else
// the cookie, else Simplified Chinese.
func (s *Server) lang(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "zh" || l == "en" {
		if c, err := r.Cookie(langCookie); err != nil || c.Value != l {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
				HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
		}
		return l
	}
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == "zh" || c.Value == "en") {
		return c.Value
	}
	return "zh"
}

func remoteOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func withLang(link, lang string) string {
	if strings.Contains(link, "?") {
		return link + "&lang=" + lang
	}
	return link + "?lang=" + lang
}

// session is a signed-in person and their session's CSRF token.
type session struct {
	who  *who
	hash string
	csrf string
}

// session finds the request's session: not expired, and its person still
// allowed (a disabled person's sessions stop working at once).
func (s *Server) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	h := hashOf(c.Value)
	var person, csrf string
	err = s.db.QueryRowContext(r.Context(), `SELECT person_id, csrf FROM sessions WHERE hash = ? AND expires_ms > ?`,
		h, s.cfg.Now().UnixMilli()).Scan(&person, &csrf)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up session: %w", err)
	}
	w, err := lookupPerson(r.Context(), s.cfg.Model, person)
	if errors.Is(err, ErrNotAllowed) {
		if _, err := s.db.ExecContext(r.Context(), `DELETE FROM sessions WHERE person_id = ?`, person); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if errors.Is(err, ErrUnknownPerson) {
		// Not in the model (now): refused, but the session is kept, as
		// the model may be being rebuilt from the changelog.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{who: w, hash: h, csrf: csrf}, nil
}

type menuItem struct {
	Name, Title, Href string
	Current           bool
}

type hidden struct{ Name, Value string }

type cellView struct {
	Text, Href, Image string
	Numeric           bool
}

type download struct{ Format, Table, Label, Href string }

type tableView struct {
	Name, Title string
	Columns     []report.Column
	Rows        [][]cellView
	Downloads   []download
}

// view is what a template renders.
type view struct {
	Lang, Title    string
	M              map[string]string
	Who            *who
	CSRF           string
	Menu           []menuItem
	LangZH, LangEN string
	Home           string
	Action, Month  string
	Hidden         []hidden
	Charts         []template.HTML
	Tables         []tableView
	Status         int
	Error, Notice  string
	Person         string
}

func (s *Server) newView(r *http.Request, lang string, ss *session, title string) *view {
	v := &view{Lang: lang, Title: title, M: messages[lang], Home: withLang("/p/coverage", lang)}
	switchTo := func(l string) string {
		q := r.URL.Query()
		q.Set("lang", l)
		return r.URL.Path + "?" + q.Encode()
	}
	v.LangZH, v.LangEN = switchTo("zh"), switchTo("en")
	if ss != nil {
		v.Who, v.CSRF = ss.who, ss.csrf
		cur := strings.TrimPrefix(r.URL.Path, "/p/")
		for _, p := range report.Pages(lang) {
			v.Menu = append(v.Menu, menuItem{Name: p.Name, Title: p.Title, Href: withLang("/p/"+p.Name, lang), Current: p.Name == cur})
		}
	}
	return v
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name, v); err != nil {
		s.cfg.Log.Error("hq web: render", "template", name, "err", err)
	}
}

// fail answers with an error page in the person's language.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, status int, text string) {
	lang := s.lang(w, r)
	v := s.newView(r, lang, ss, msg(lang, "err_title"))
	v.Status, v.Error = status, text
	s.render(w, status, "error", v)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	s.cfg.Log.Error("hq web", "path", r.URL.Path, "err", err)
	s.fail(w, r, ss, http.StatusInternalServerError, msg(s.lang(w, r), "err_500"))
}

func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	lang := s.lang(w, r)
	if ss, err := s.session(r); err == nil && ss != nil {
		http.Redirect(w, r, withLang("/p/coverage", lang), http.StatusSeeOther)
		return
	}
	v := s.newView(r, lang, nil, msg(lang, "signin"))
	switch r.URL.Query().Get("m") {
	case "out":
		v.Notice = msg(lang, "signedout")
	case "please":
		v.Notice = msg(lang, "please")
	}
	s.signinPage(w, v, http.StatusOK)
}

// signinPage renders the sign-in form with a fresh double-submit token:
// the same random value in a cookie and in the form.
func (s *Server) signinPage(w http.ResponseWriter, v *view, status int) {
	tok, err := randomToken(16)
	if err != nil {
		http.Error(w, "random: "+err.Error(), http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: tok, Path: "/signin", HttpOnly: true,
		Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	v.CSRF = tok
	s.render(w, status, "signin", v)
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ctx := r.Context()
	now := s.cfg.Now()
	lang := s.lang(w, r)
	if l := r.PostFormValue("lang"); l == "zh" || l == "en" {
		lang = l
	}
	person := strings.TrimSpace(r.PostFormValue("person"))
	code := normalizeCode(r.PostFormValue("code"))
	remote := remoteOf(r)
	v := s.newView(r, lang, nil, msg(lang, "signin"))
	v.Person = person
	refuse := func(status int, text, why string, counts bool) {
		if counts {
			if _, err := s.db.ExecContext(ctx, `INSERT INTO failures (at_ms, person_id, remote) VALUES (?, ?, ?)`,
				now.UnixMilli(), clip(person, 64), remote); err != nil {
				s.internal(w, r, nil, err)
				return
			}
		}
		if err := audit(ctx, s.db, now.UnixMilli(), person, "signin", "failed: "+why, remote); err != nil {
			s.internal(w, r, nil, err)
			return
		}
		v.Status, v.Error = status, text
		s.signinPage(w, v, status)
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		refuse(http.StatusForbidden, msg(lang, "err_csrf"), "sign-in form token missing or wrong", false)
		return
	}
	if person == "" || code == "" {
		refuse(http.StatusBadRequest, msg(lang, "err_signin"), "person or code empty", false)
		return
	}
	until, err := lockedUntil(ctx, s.db, now, person, remote)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	if !until.IsZero() {
		refuse(http.StatusTooManyRequests, fmt.Sprintf(msg(lang, "err_locked"), until.In(china).Format("15:04:05")),
			"locked until "+until.UTC().Format(time.RFC3339), false)
		return
	}
	who, err := lookupPerson(ctx, s.cfg.Model, person)
	switch {
	case errors.Is(err, ErrUnknownPerson):
		refuse(http.StatusUnauthorized, msg(lang, "err_signin"), "unknown person", true)
		return
	case errors.Is(err, ErrNotAllowed):
		refuse(http.StatusForbidden, msg(lang, "err_notallowed"), err.Error(), true)
		return
	case err != nil:
		s.internal(w, r, nil, err)
		return
	}
	why, err := useCode(ctx, s.db, now, person, code)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	if why != "" {
		refuse(http.StatusUnauthorized, msg(lang, "err_signin"), why, true)
		return
	}
	tok, err := randomToken(32)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	csrf, err := randomToken(16)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sessions (hash, person_id, csrf, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)`,
		hashOf(tok), who.ID, csrf, now.UnixMilli(), now.Add(SessionTTL).UnixMilli()); err != nil {
		s.internal(w, r, nil, err)
		return
	}
	// Forget what no longer counts: failures out of the window, ended
	// sessions. (Codes stay, used or not: they are the issue record.)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM failures WHERE at_ms <= ?`, now.Add(-FailureWindow).UnixMilli()); err != nil {
		s.internal(w, r, nil, err)
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil && old.Value != "" { // this browser's previous session ends
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE hash = ?`, hashOf(old.Value)); err != nil {
			s.internal(w, r, nil, err)
			return
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_ms <= ?`, now.UnixMilli()); err != nil {
		s.internal(w, r, nil, err)
		return
	}
	scope := "city"
	if who.Town != "" {
		scope = "town " + who.Town
	}
	if err := audit(ctx, s.db, now.UnixMilli(), who.ID, "signin", "ok ("+scope+")", remote); err != nil {
		s.internal(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: s.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL / time.Second)})
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/signin", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, withLang("/p/coverage", lang), http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ss, err := s.session(r)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	lang := s.lang(w, r)
	if ss == nil {
		http.Redirect(w, r, "/signin?m=please&lang="+lang, http.StatusSeeOther)
		return
	}
	if subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(r.PostFormValue("csrf"))) != 1 {
		s.fail(w, r, ss, http.StatusForbidden, msg(lang, "err_csrf"))
		return
	}
	if _, err := s.db.ExecContext(r.Context(), `DELETE FROM sessions WHERE hash = ?`, ss.hash); err != nil {
		s.internal(w, r, ss, err)
		return
	}
	if err := audit(r.Context(), s.db, s.cfg.Now().UnixMilli(), ss.who.ID, "signout", "", remoteOf(r)); err != nil {
		s.internal(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/signin?m=out&lang="+lang, http.StatusSeeOther)
}

// reserved are the URL parameters the page reads itself; the others go to
// the report as Query.Filter.
var reserved = map[string]bool{"lang": true, "month": true, "unit": true, "table": true}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	ss, err := s.session(r)
	if err != nil {
		s.internal(w, r, nil, err)
		return
	}
	lang := s.lang(w, r)
	if ss == nil {
		http.Redirect(w, r, "/signin?m=please&lang="+lang, http.StatusSeeOther)
		return
	}
	name, format := r.PathValue("name"), ""
	for _, f := range []string{"csv", "xlsx"} {
		if n, ok := strings.CutSuffix(name, "."+f); ok {
			name, format = n, f
		}
	}
	params := r.URL.Query()
	q := report.Query{Lang: lang, Town: ss.who.Town, Month: params.Get("month"), Unit: params.Get("unit"),
		Filter: map[string]string{}, NowMs: s.cfg.Now().UnixMilli()}
	for k, vs := range params {
		if !reserved[k] && len(vs) > 0 {
			q.Filter[k] = vs[0]
		}
	}
	res, err := report.Page(r.Context(), s.cfg.Model, name, q)
	if err != nil {
		s.reportError(w, r, ss, name, format, err)
		return
	}
	if format != "" {
		s.download(w, r, ss, name, format, q, res)
		return
	}
	month := q.Month
	if month == "" {
		month = s.cfg.Now().In(china).Format("2006-01")
	}
	title := res.Title
	v := s.newView(r, lang, ss, title)
	v.Action, v.Month = "/p/"+name, month
	for k, vs := range params {
		if k != "month" && k != "table" && len(vs) > 0 {
			v.Hidden = append(v.Hidden, hidden{k, vs[0]})
		}
	}
	if params.Get("lang") == "" {
		v.Hidden = append(v.Hidden, hidden{"lang", lang})
	}
	for _, c := range res.Charts {
		v.Charts = append(v.Charts, chartSVG(c))
	}
	dq := url.Values{}
	for k, vs := range params {
		if k != "lang" && k != "table" {
			dq[k] = vs
		}
	}
	for i, t := range res.Tables {
		tv := tableView{Name: t.Name, Title: t.Title, Columns: t.Columns}
		for _, row := range t.Rows {
			cells := make([]cellView, len(row))
			for j, c := range row {
				cells[j] = cellView{Text: c.Text, Numeric: j < len(t.Columns) && t.Columns[j].Numeric}
				switch {
				case strings.HasPrefix(c.Link, "/p/"):
					cells[j].Href = withLang(c.Link, lang)
				case strings.HasPrefix(c.Link, "/f/"):
					cells[j].Href = c.Link
				}
				if strings.HasPrefix(c.Image, "/f/") || strings.HasPrefix(c.Image, "/static/") {
					cells[j].Image = c.Image
				}
			}
			tv.Rows = append(tv.Rows, cells)
		}
		dq.Set("table", strconv.Itoa(i))
		for _, f := range []string{"csv", "xlsx"} {
			tv.Downloads = append(tv.Downloads, download{Format: f, Table: t.Name, Label: msg(lang, "download_"+f),
				Href: "/p/" + name + "." + f + "?" + dq.Encode()})
		}
		v.Tables = append(v.Tables, tv)
	}
	s.render(w, http.StatusOK, "page", v)
}

// reportError maps the report's errors to pages: out of scope 403 (and
// audited), unknown page 404, bad parameter 400 with the report's message.
func (s *Server) reportError(w http.ResponseWriter, r *http.Request, ss *session, name, format string, err error) {
	lang := s.lang(w, r)
	switch {
	case errors.Is(err, report.ErrOutOfScope):
		detail := "page " + name
		if format != "" {
			detail = "download " + name + "." + format
		}
		detail += " ?" + r.URL.RawQuery + ": " + err.Error()
		if aerr := audit(r.Context(), s.db, s.cfg.Now().UnixMilli(), ss.who.ID, "refused", detail, remoteOf(r)); aerr != nil {
			s.internal(w, r, ss, aerr)
			return
		}
		s.fail(w, r, ss, http.StatusForbidden, msg(lang, "err_403"))
	case errors.Is(err, report.ErrNotFound):
		s.fail(w, r, ss, http.StatusNotFound, msg(lang, "err_404"))
	case errors.Is(err, report.ErrBadQuery):
		s.fail(w, r, ss, http.StatusBadRequest, msg(lang, "err_400")+err.Error())
	default:
		s.internal(w, r, ss, err)
	}
}
