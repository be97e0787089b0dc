package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

// fieldctl hq web on its own against syncd's NATS with an HQ credential
// (read-only on the changelog): it follows the changelog into its read
// model, serves the page, and a code from fieldctl hq signin-code signs
// HQ in; fieldctl hq audit lists the code and the sign-in; Ctrl-C stops
// it cleanly.
func TestHQWebRunsThePageOnItsOwn(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, []string{"hq", "web", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "office"),
			"-hq-dir", dir, "-listen", "127.0.0.1:0"}, strings.NewReader(""), stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("fieldctl hq web did not stop within 30s of the cancel")
		}
	})
	pageLine := regexp.MustCompile(`(?m)^fieldctl: HQ page (http://127\.0\.0\.1:\d+) \(sign in with a code: fieldctl hq signin-code -hq-dir ` + regexp.QuoteMeta(dir) + ` PERSON\)$`)
	var base string
	testenv.WaitFor(t, 30*time.Second, "the HQ page's line", func() bool {
		if m := pageLine.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			return true
		}
		return false
	})
	for _, want := range []string{"fieldctl: connected to NATS at " + e.NATS.ClientURL(), "following as durable consumer hq-web"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr.String())
		}
	}

	// The HQ person arrives with the changelog; then a code can be issued.
	var r result
	testenv.WaitFor(t, 30*time.Second, "a sign-in code for "+testenv.HQ, func() bool {
		r = fieldctl(t, "hq", "signin-code", "-hq-dir", dir, testenv.HQ)
		return r.code == 0
	})
	m := regexp.MustCompile(`(?m)^sign-in code: (\S+)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("signin-code printed no code:\n%s", r.stdout)
	}
	code := m[1]
	for _, want := range []string{"signs in as:  U-hq 組織部 (hq)\n", "scope:        the whole city\n", "(China time), once\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("signin-code output lacks %q:\n%s", want, r.stdout)
		}
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := client.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if csrf == nil {
		t.Fatalf("no sign-in form at %s/signin:\n%s", base, body)
	}
	resp, err = client.PostForm(base+"/signin", url.Values{"csrf": {string(csrf[1])}, "person": {testenv.HQ}, "code": {code}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/p/coverage" || !strings.Contains(string(body), "宋埠鎮") {
		t.Fatalf("sign-in with the code: %s at %s, want the city's coverage naming 宋埠鎮:\n%s", resp.Status, resp.Request.URL, body)
	}

	// The audit: the code issued, then the sign-in.
	out := ok(t, "hq", "audit", "-hq-dir", dir, "--json")
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a web.AuditEntry
		decode(t, line, &a)
		if a.PersonID != testenv.HQ || a.AtMs == 0 {
			t.Errorf("audit entry %s: want person %s and a time", line, testenv.HQ)
		}
		actions = append(actions, a.Action+" "+strings.Fields(a.Detail)[0])
	}
	if got, want := strings.Join(actions, ", "), "code issued, signin ok"; got != want {
		t.Errorf("audit actions %q, want %q:\n%s", got, want, out)
	}
	text := ok(t, "hq", "audit", "-hq-dir", dir, "-n", "1")
	if lines := strings.Split(strings.TrimSpace(text), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME (UTC+8)") || !strings.Contains(lines[1], "signin") {
		t.Errorf("audit -n 1: want the header and the sign-in:\n%s", text)
	}

	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("fieldctl hq web after Ctrl-C: %v\n%s", runErr, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("fieldctl hq web did not stop within 30s")
	}
	if !regexp.MustCompile(`(?m)^fieldctl: stopped at change [1-9]\d*$`).MatchString(stderr.String()) {
		t.Errorf("no final 'stopped at change N' line:\n%s", stderr.String())
	}
}

// Who may get a code, and what the commands refuse, each saying why.
func TestHQWebCommandsRefuse(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"hq", "web", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "refuse"),
			"-hq-dir", dir, "-listen", "127.0.0.1:0"}, strings.NewReader(""), io.Discard, stderr)
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 30*time.Second, "the HQ person in the read model", func() bool {
		return fieldctl(t, "hq", "signin-code", "-hq-dir", dir, testenv.HQ).code == 0
	})

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a village's secretary", []string{"hq", "signin-code", "-hq-dir", dir, testenv.Secretary}, 1, "not a town's"},
		{"a member", []string{"hq", "signin-code", "-hq-dir", dir, testenv.Member}, 1, `role "member"`},
		{"unknown person", []string{"hq", "signin-code", "-hq-dir", dir, "U-nobody"}, 1, `no person "U-nobody"`},
		{"no person", []string{"hq", "signin-code", "-hq-dir", dir}, 2, "want exactly one PERSON"},
		{"ttl too long", []string{"hq", "signin-code", "-hq-dir", dir, "-ttl", "1000h", testenv.HQ}, 2, "at most 720h"},
		{"no read model there", []string{"hq", "signin-code", "-hq-dir", t.TempDir(), testenv.HQ}, 1, "no HQ read model at"},
		{"no audit there", []string{"hq", "audit", "-hq-dir", t.TempDir()}, 1, "no HQ page database at"},
		{"plain HTTP beyond loopback", []string{"hq", "web", "-listen", "0.0.0.0:0"}, 2, "give -tls-cert and -tls-key"},
		{"key without certificate", []string{"hq", "web", "-tls-key", "k.pem"}, 2, "-tls-key given without -tls-cert"},
		{"bad durable", []string{"hq", "web", "-durable", "a.b"}, 2, "-durable \"a.b\""},
		{"the HQ directory in use", []string{"hq", "web", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "second"),
			"-hq-dir", dir, "-listen", "127.0.0.1:0"}, 1, "is in use by another syncd or fieldctl hq web"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := fieldctl(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("fieldctl %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.code, tt.want)
			}
		})
	}

	// Each command explains itself.
	for _, cmd := range []string{"web", "signin-code", "audit"} {
		r := fieldctl(t, "hq", cmd, "-h")
		if r.code != 0 || !strings.Contains(r.stderr, "Usage: fieldctl hq "+cmd) || !strings.Contains(r.stderr, "Example:") || !strings.Contains(r.stderr, "-hq-dir") {
			t.Errorf("fieldctl hq %s -h: exit %d\n%s", cmd, r.code, r.stderr)
		}
	}
	var js map[string]string
	r := fieldctl(t, "hq", "signin-code", "-hq-dir", dir, "--json", testenv.HQ)
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js["code"] == "" || js["scope"] != "the whole city" || js["name"] != "組織部" {
		t.Errorf("signin-code --json: %v %q", err, r.stdout)
	}
}

// Beyond loopback fieldctl hq web serves HTTPS with the operator's
// certificate.
func TestHQWebServesHTTPSWithTheOperatorsCertificate(t *testing.T) {
	e := testenv.Start(t)
	certDir := t.TempDir()
	if _, _, err := server.LoadOrCreateTLS(certDir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &lockedBuffer{}
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, []string{"hq", "web", "-nats", e.NATS.ClientURL(), "-nats-nkey", e.HQCredential(t, "tls"), "-hq-dir", t.TempDir(),
			"-listen", "0.0.0.0:0", "-tls-cert", filepath.Join(certDir, "server.pem"), "-tls-key", filepath.Join(certDir, "server-key.pem")},
			strings.NewReader(""), io.Discard, stderr)
	}()
	defer func() { cancel(); <-done }()
	var port string
	testenv.WaitFor(t, 30*time.Second, "the HQ page's line", func() bool {
		m := regexp.MustCompile(`(?m)^fieldctl: HQ page https://[^:]+:(\d+) `).FindStringSubmatch(stderr.String())
		if m != nil {
			port = m[1]
		}
		return m != nil || strings.Contains(stderr.String(), "fieldctl: stopped")
	})
	if port == "" {
		t.Fatalf("no https line:\n%s", stderr.String())
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(certDir, server.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://127.0.0.1:" + port + "/signin")
	if err != nil {
		t.Fatalf("GET /signin over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /signin over TLS: %s", resp.Status)
	}
	cancel()
	<-done
	if runErr != nil {
		t.Errorf("fieldctl hq web: %v\n%s", runErr, stderr.String())
	}
}
