package server

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/fieldsync/fieldsync/domain"
)

// The embedded NATS authenticates every connection by NKey: a connection
// without one is refused. All users are in the server's one account (the
// global account $G, which holds JetStream and the changelog stream: a
// data directory of an earlier syncd keeps its stream): syncd's own user
// with every right, and HQ users (stored in the database, managed with
// fieldctl admin hq-credential) who may only read the changelog and keep
// consumers on it (HQPermissions).

// HQPermissions are what an HQ user of the embedded NATS may do: read the
// changelog stream and keep consumers on it, and nothing else. Publishing
// is denied but for these JetStream API calls (and acks), so an HQ user
// cannot publish to fieldsync.changes.>, purge, delete, create or update a
// stream, or delete a message.
func HQPermissions(publicKey string) *natsserver.Permissions {
	return HQPermissionsFor(publicKey, domain.StreamName)
}

// HQPermissionsFor are HQPermissions on the changelog stream named stream
// (a region's syncd: domain.RegionStream(region)).
func HQPermissionsFor(publicKey, stream string) *natsserver.Permissions {
	s := stream
	return &natsserver.Permissions{
		Publish: &natsserver.SubjectPermission{
			Allow: []string{
				"$JS.API.INFO",                                // account info (nats account info, js.AccountInfo)
				"$JS.API.STREAM.INFO." + s,                    // stream info
				"$JS.API.STREAM.NAMES",                        // natscli looks the stream up by name
				"$JS.API.CONSUMER.CREATE." + s,                // an unnamed ephemeral consumer (older clients)
				"$JS.API.CONSUMER.CREATE." + s + ".>",         // create a consumer: .<name> or .<name>.<filter>
				"$JS.API.CONSUMER.DURABLE.CREATE." + s + ".*", // the older durable create
				"$JS.API.CONSUMER.INFO." + s + ".*",
				"$JS.API.CONSUMER.DELETE." + s + ".*",
				"$JS.API.CONSUMER.NAMES." + s,
				"$JS.API.CONSUMER.LIST." + s,
				"$JS.API.CONSUMER.MSG.NEXT." + s + ".*", // pull (fetch, next, consume)
				"$JS.ACK." + s + ".>",                   // acks, v1 reply subjects
				"$JS.ACK.*.*." + s + ".>",               // acks, v2 reply subjects ($JS.ACK.<domain>.<account>.<stream>...)
			},
		},
		Subscribe: &natsserver.SubjectPermission{
			Allow: []string{
				HQInboxPrefix(publicKey) + ".>", // replies to its API calls and pulled messages: its own inbox only
				domain.SubjectPrefix + ".>",     // the changelog's subjects as they are published
			},
		},
	}
}

// HQInboxPrefix is the inbox prefix an HQ user must connect with
// (nats.go CustomInboxPrefix, natscli --inbox-prefix): the replies to its
// calls come there, and it may subscribe nowhere else under _INBOX, so it
// cannot read the replies syncd or another HQ user gets (stream settings,
// publish acknowledgements). One per user, from its public key.
func HQInboxPrefix(publicKey string) string { return "_INBOX.hq." + publicKey }

// HQUser is an HQ credential of the embedded NATS.
type HQUser struct {
	Name      string
	PublicKey string // an NKey user public key (U...)
}

// NATSAuth is the embedded NATS's users: syncd's own key and the HQ users.
// Pass it to EmbeddedNATS with WithAuth; SetHQUsers changes the HQ users of
// the running server.
type NATSAuth struct {
	syncd nkeys.KeyPair

	mu sync.Mutex
	hq []HQUser
	// stream is the changelog stream HQ users may read ("":
	// domain.StreamName; SetRegion).
	stream string
	opts   *natsserver.Options // the options the server started with
	ns     *natsserver.Server
}

// NewNATSAuth makes the users of an embedded NATS with syncd's key pair
// (LoadOrCreateNKey) and the HQ users.
func NewNATSAuth(syncd nkeys.KeyPair, hq []HQUser) *NATSAuth {
	return &NATSAuth{syncd: syncd, hq: slices.Clone(hq)}
}

// SetRegion makes the HQ users read region's changelog stream
// (domain.RegionStream). Call it before the server starts (WithAuth).
func (a *NATSAuth) SetRegion(region string) {
	a.mu.Lock()
	a.stream = domain.RegionStream(region)
	a.mu.Unlock()
}

// WithAuth turns authentication on: only syncd's key and the HQ users
// connect.
func WithAuth(a *NATSAuth) NATSOption {
	return func(o *natsserver.Options) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.opts = o
		a.apply(o)
		authByOpts.Store(o, a)
	}
}

func (a *NATSAuth) apply(o *natsserver.Options) {
	pub, _ := a.syncd.PublicKey() // a key pair made from a seed has one
	o.Nkeys = []*natsserver.NkeyUser{{Nkey: pub}}
	stream := a.stream
	if stream == "" {
		stream = domain.StreamName
	}
	for _, u := range a.hq {
		o.Nkeys = append(o.Nkeys, &natsserver.NkeyUser{Nkey: u.PublicKey, Permissions: HQPermissionsFor(u.PublicKey, stream)})
	}
	o.NoAuthUser = ""
}

// authByOpts: the NATSAuth of options being started (EmbeddedNATS tells it
// its server).
var authByOpts sync.Map // *natsserver.Options -> *NATSAuth

// started tells a the server it configured.
func (a *NATSAuth) started(ns *natsserver.Server) {
	a.mu.Lock()
	a.ns = ns
	a.mu.Unlock()
}

// SetHQUsers makes hq the HQ users of the running server: a user no longer
// in it is disconnected at once, a new one can connect.
func (a *NATSAuth) SetHQUsers(hq []HQUser) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hq = slices.Clone(hq)
	if a.ns == nil || a.opts == nil {
		return nil // applied when the server starts
	}
	o := a.opts.Clone()
	a.apply(o)
	if err := a.ns.ReloadOptions(o); err != nil {
		return fmt.Errorf("embedded nats: apply the HQ credentials: %w", err)
	}
	a.opts = o
	return nil
}

// ConnectOption is how syncd (or a test standing for it) connects as
// syncd's own user.
func (a *NATSAuth) ConnectOption() nats.Option { return NKeyOption(a.syncd) }

// NKeyOption authenticates a NATS connection with kp.
func NKeyOption(kp nkeys.KeyPair) nats.Option {
	pub, _ := kp.PublicKey()
	return nats.Nkey(pub, kp.Sign)
}

// NewHQKey makes a new NKey user key pair: its public key for the server,
// its seed for the HQ consumer.
func NewHQKey() (public string, seed []byte, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	public, _ = kp.PublicKey()
	seed, err = kp.Seed()
	return public, seed, err
}

// LoadOrCreateNKey reads an NKey user seed from path, or creates one there
// (mode 0600) if the file does not exist: syncd's own user of its
// embedded NATS, kept so that an operator can use it with natscli
// (nats --nkey <data>/nats-syncd.nk stream edit ...).
func LoadOrCreateNKey(path string) (kp nkeys.KeyPair, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, false, err
		}
		seed, _ := kp.Seed()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create %s: %w", path, err)
		}
		_, werr := f.Write(append(seed, '\n'))
		if err := errors.Join(werr, f.Close()); err != nil {
			return nil, false, fmt.Errorf("write %s: %w", path, err)
		}
		return kp, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	kp, err = ParseNKeySeed(b)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return kp, false, nil
}

// ParseNKeySeed reads an NKey user seed (SU...) from a file's content: the
// bare seed, or a .creds file holding one.
func ParseNKeySeed(b []byte) (nkeys.KeyPair, error) {
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "-----") {
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("no NKey seed found: %w", err)
		}
		return kp, nil
	}
	kp, err := nkeys.FromSeed([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("not an NKey seed (want one line starting with SU): %w", err)
	}
	if p, _ := kp.PublicKey(); !strings.HasPrefix(p, "U") {
		return nil, errors.New("not an NKey user seed (want one starting with SU)")
	}
	return kp, nil
}

// HQConnectOptions are the options an HQ consumer connects with, from the
// NKey seed file fieldctl admin hq-credential add wrote: the key, and the
// inbox prefix its permissions allow (HQInboxPrefix).
func HQConnectOptions(seedFile string) ([]nats.Option, error) {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return nil, err
	}
	kp, err := ParseNKeySeed(b)
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return []nats.Option{NKeyOption(kp), nats.CustomInboxPrefix(HQInboxPrefix(pub))}, nil
}
