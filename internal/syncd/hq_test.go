package syncd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// importSample imports testenv's sample org into d over the admin RPC.
func importSample(t *testing.T, d *syncd.Daemon, plaintext bool) {
	t.Helper()
	creds := insecure.NewCredentials()
	if !plaintext {
		creds = credentials.NewTLS(syncer.PinnedTLS(d.Addr, d.CAFingerprint))
	}
	conn, err := grpc.NewClient(d.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+d.AdminToken)
	resp, err := pb.NewAdminServiceClient(conn).ImportOrg(ctx, testenv.SampleOrg())
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", err, resp.GetErrors())
	}
}

// signIn signs in on the page at base as person with code, as the form
// does (its double-submit token first), and returns the client holding
// the session cookie and the page the sign-in led to.
func signIn(t *testing.T, client *http.Client, base, person, code string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(base + "/signin")
	if err != nil {
		t.Fatalf("GET /signin: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /signin: %s\n%s", resp.Status, body)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("sign-in form has no csrf field:\n%s", body)
	}
	resp, err = client.PostForm(base+"/signin", url.Values{"csrf": {string(m[1])}, "person": {person}, "code": {code}})
	if err != nil {
		t.Fatalf("POST /signin: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// syncd on its embedded default runs the HQ read model and serves the HQ
// page: it prints the address, the model follows the changelog (the
// imported org arrives in it), a code issued against its files signs HQ
// in, and Stop stops the page and the follower and frees the HQ directory.
func TestStartServesTheHQPage(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: dir, Plaintext: true, HQListen: "127.0.0.1:0", Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if d.HQ == nil {
		t.Fatal("no HQ page with HQListen set")
	}
	hqDir := filepath.Join(dir, "hq")
	want := "syncd: HQ page http://" + d.HQ.Addr + " (sign in with a code: fieldctl hq signin-code -hq-dir " + hqDir + " PERSON)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("start output lacks %q:\n%s", want, out.String())
	}
	// Before "listening on", which tests and scripts wait for.
	if strings.Index(out.String(), "HQ page") > strings.Index(out.String(), "listening on") {
		t.Errorf("the HQ page's line comes after the listening line:\n%s", out.String())
	}
	if d.HQ.URL != "http://"+d.HQ.Addr {
		t.Errorf("HQ URL %q, want http://%s", d.HQ.URL, d.HQ.Addr)
	}

	importSample(t, d, true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var name string
		err := d.HQ.Model.DB().QueryRow(`SELECT name FROM people WHERE id = ?`, testenv.HQ).Scan(&name)
		if err == nil && name == "組織部" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HQ person did not reach the read model within 20s (last: %q, %v; model at change %d)", name, err, d.HQ.Model.LastSeq())
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, err := web.IssueCode(context.Background(), filepath.Join(hqDir, syncd.HQWebFile), d.HQ.Model.DB(), testenv.HQ, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, body := signIn(t, client, d.HQ.URL, testenv.HQ, code)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/p/coverage" {
		t.Fatalf("sign-in ended at %s with %s, want /p/coverage with 200 OK:\n%s", resp.Request.URL, resp.Status, body)
	}
	if !strings.Contains(body, `class="report"`) || !strings.Contains(body, "組織部") {
		t.Errorf("coverage page lacks its table or the person's name:\n%s", body)
	}
	var session *http.Cookie
	for _, c := range jar.Cookies(resp.Request.URL) {
		if c.Name == "fieldsync_hq" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie fieldsync_hq after sign-in; cookies %v", jar.Cookies(resp.Request.URL))
	}

	// The follower holds the HQ directory: no second one on it.
	if _, err := syncd.StartHQ(context.Background(), syncd.HQConfig{Dir: hqDir, Listen: "127.0.0.1:0", JS: d.JS, Durable: "other"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second follower on %s: %v, want in use", hqDir, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := http.Get(d.HQ.URL + "/signin"); err == nil {
		t.Errorf("the HQ page still answers after Stop")
	}
	// Free again; and the model kept what it had applied.
	d2, err := syncd.Start(context.Background(), syncd.Config{Dir: dir, Plaintext: true, HQListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer d2.Stop()
	if n := d2.HQ.Model.LastSeq(); n == 0 {
		t.Errorf("restarted read model at change 0: it did not keep its place")
	}
}

// Beyond loopback the page is HTTPS with syncd's own certificate, which
// then covers the page's address too; the session cookie is Secure.
func TestHQPageBeyondLoopbackUsesSyncdsCertificate(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: dir, HQListen: "0.0.0.0:0", TLSHosts: []string{"hq.example"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	_, port, _ := net.SplitHostPort(d.HQ.Addr)
	if want := "syncd: HQ page https://hq.example:" + port + " "; !strings.Contains(out.String(), want) {
		t.Errorf("start output lacks %q:\n%s", want, out.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", server.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		resp, err := client.Get("https://" + net.JoinHostPort(host, port) + "/signin")
		if err != nil {
			t.Fatalf("GET https://%s:%s/signin, checked against syncd's CA: %v", host, port, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /signin over TLS: %s", resp.Status)
		}
		var secure bool
		for _, c := range resp.Cookies() {
			secure = secure || c.Secure
		}
		if !secure {
			t.Errorf("cookies over HTTPS are not Secure: %v", resp.Cookies())
		}
	}
	if resp, err := http.Get("http://127.0.0.1:" + port + "/signin"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the HTTPS page's port answered 200")
		}
	}
	// gRPC still verifies with the same CA (the certificate was made once
	// for both addresses).
	importSample(t, d, false)
}

// The HQ page's settings are checked, each error naming its flag.
func TestHQPageSettings(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		cfg  syncd.Config
		want string
	}{
		{"cert without key", syncd.Config{HQListen: "127.0.0.1:0", HQTLSCert: "x.pem"}, "-hq-tls-cert given without -hq-tls-key"},
		{"key without cert", syncd.Config{HQListen: "127.0.0.1:0", HQTLSKey: "x.pem"}, "-hq-tls-key given without -hq-tls-cert"},
		{"missing cert files", syncd.Config{HQListen: "127.0.0.1:0", HQTLSCert: "nope.pem", HQTLSKey: "nope-key.pem"}, "-hq-tls-cert nope.pem"},
		{"cert with the page off", syncd.Config{HQTLSCert: "x.pem", HQTLSKey: "y.pem"}, "-hq-listen off"},
		{"malformed address", syncd.Config{HQListen: "8480"}, "want host:port"},
		{"address in use", syncd.Config{HQListen: busy.Addr().String()}, "choose another with -hq-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Dir, tc.cfg.Plaintext = t.TempDir(), true
			d, err := syncd.Start(context.Background(), tc.cfg)
			if err == nil {
				d.Stop()
				t.Fatalf("started; want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}

	// The default address in use (another syncd on the machine): syncd
	// starts without the page and says so.
	var out strings.Builder
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: t.TempDir(), Plaintext: true, Out: &out,
		HQListen: busy.Addr().String(), HQListenIsDefault: true})
	if err != nil {
		t.Fatalf("start with the default HQ address in use: %v", err)
	}
	defer d.Stop()
	if d.HQ != nil {
		t.Errorf("an HQ page on a busy address")
	}
	if want := "syncd: no HQ page: its default address " + busy.Addr().String() + " is in use"; !strings.Contains(out.String(), want) {
		t.Errorf("start output lacks %q:\n%s", want, out.String())
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}

	// Plain HTTP beyond loopback is refused even for a listener handed over.
	lis, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = syncd.StartHQ(context.Background(), syncd.HQConfig{Dir: t.TempDir(), Listener: lis, Durable: "x"})
	if err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Errorf("StartHQ with plain HTTP on %s: %v, want refused", lis.Addr(), err)
	}
	if _, err := net.Dial("tcp", lis.Addr().String()); err == nil {
		t.Errorf("the refused listener %s is still open", lis.Addr())
	}
}

// Deleting the read model while syncd is stopped rebuilds it from the
// changelog at the next start (its durable consumer, ahead of the new
// empty model, is made again from the start), as the README says.
func TestHQReadModelRebuiltWhenDeleted(t *testing.T) {
	dir := t.TempDir()
	cfg := syncd.Config{Dir: dir, Plaintext: true, HQListen: "127.0.0.1:0"}
	d, err := syncd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	importSample(t, d, true)
	last, err := d.Store.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the read model to catch up", func() bool { return d.HQ.Model.LastSeq() >= last })
	count := func(d *syncd.Daemon) (n int) {
		if err := d.HQ.Model.DB().QueryRow(`SELECT (SELECT count(*) FROM households) + (SELECT count(*) FROM people) + (SELECT count(*) FROM units)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count(d)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, "hq", syncd.HQModelFile+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	d2, err := syncd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	testenv.WaitFor(t, 20*time.Second, "the rebuilt read model to catch up", func() bool { return d2.HQ.Model.LastSeq() >= last })
	if after := count(d2); after != before || before == 0 {
		t.Errorf("rebuilt model holds %d households, people and units; before: %d", after, before)
	}
}

// With the operator's certificate the page is HTTPS with it, on loopback
// too, and its cookies are Secure.
func TestHQPageWithTheOperatorsCertificate(t *testing.T) {
	certDir := t.TempDir()
	if _, _, err := server.LoadOrCreateTLS(certDir, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: t.TempDir(), Plaintext: true, Out: &out, HQListen: "127.0.0.1:0",
		HQTLSCert: filepath.Join(certDir, "server.pem"), HQTLSKey: filepath.Join(certDir, "server-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if want := "syncd: HQ page https://" + d.HQ.Addr + " "; !strings.Contains(out.String(), want) {
		t.Errorf("start output lacks %q:\n%s", want, out.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(certDir, server.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(d.HQ.URL + "/signin")
	if err != nil {
		t.Fatalf("GET %s/signin with the operator's CA: %v", d.HQ.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 || !resp.Cookies()[0].Secure {
		t.Errorf("GET /signin over the operator's TLS: %s, cookies %v; want 200 and Secure cookies", resp.Status, resp.Cookies())
	}
}
