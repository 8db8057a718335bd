package keybackend

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.step.sm/crypto/kms/uri"
)

// Kind names where a key lives. It is what store.KeyRecord.Backend records
// for a key held outside the database.
type Kind string

// The kinds a key URI can name.
const (
	// Soft is the default: the key is generated in process and kept in the
	// database, envelope-encrypted under the KEK (ca/keystore).
	Soft     Kind = "softkms"
	PKCS11   Kind = "pkcs11"
	AWSKMS   Kind = "awskms"
	CloudKMS Kind = "cloudkms"
	AzureKMS Kind = "azurekms"
)

// ErrSecretInURI is wrapped by ParseURI's error when a URI carries a PIN or a
// credential: those belong in a file or the environment, where they are not
// copied into configuration, shell history, process lists and logs.
var ErrSecretInURI = errors.New("secret in key URI")

// URI is a parsed and validated key URI. Only the fields of its Kind are set.
// It never holds a secret: a PKCS#11 PIN is named by PINSource (a file), never
// carried.
type URI struct {
	Kind Kind

	// PKCS#11 (RFC 7512 attributes as go.step.sm/crypto/kms/pkcs11 reads them).
	ModulePath  string // absolute path of the PKCS#11 module
	Token       string // token label; exactly one of Token, Serial, SlotID
	Serial      string
	SlotID      *int
	Object      string // CKA_LABEL of the key
	ID          []byte // CKA_ID of the key, optional
	PINSource   string // absolute path of a file holding the user PIN
	MaxSessions int    // session pool bound; 0 means the library default

	// AWS KMS. KeyID is a key id, a key ARN, or "alias/NAME".
	KeyID           string
	Region          string
	Profile         string
	CredentialsFile string // AWS shared config file (region, endpoint_url, profile)

	// Google Cloud KMS and Azure Key Vault: parsed and checked only (no
	// server runs here to test them against).
	Resource string // cloudkms: projects/.../cryptoKeyVersions/N
	Vault    string // azurekms vault name
	Name     string // azurekms key name
}

// The attributes each kind accepts. Anything else is refused, so that a typo
// ("objet=") fails at parse time rather than selecting the wrong key.
var (
	pkcs11Attrs = []string{"module-path", "token", "serial", "slot-id", "object", "id", "pin-source", "max-sessions"}
	awsAttrs    = []string{"key-id", "alias", "region", "profile", "credentials-file"}
	azureAttrs  = []string{"vault", "name", "version"}
	// secretAttrs are refused with ErrSecretInURI wherever they appear.
	secretAttrs = map[string]string{
		"pin-value":             "put the PIN in a file (mode 0600) named by pin-source=/path, or in the SIGIL_HSM_PIN environment variable",
		"pin-prompt":            "a server cannot prompt: put the PIN in a file named by pin-source=/path, or in SIGIL_HSM_PIN",
		"aws_secret_access_key": "AWS credentials come from the SDK's usual chain (environment, shared credentials file, instance role)",
		"secret-access-key":     "AWS credentials come from the SDK's usual chain (environment, shared credentials file, instance role)",
		"access-key-id":         "AWS credentials come from the SDK's usual chain (environment, shared credentials file, instance role)",
		"session-token":         "AWS credentials come from the SDK's usual chain (environment, shared credentials file, instance role)",
		"client-secret":         "Azure credentials come from the environment or a managed identity",
	}
	cloudKMSResource = regexp.MustCompile(`^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]{1,63}/cryptoKeys/[A-Za-z0-9_-]{1,63}(/cryptoKeyVersions/[1-9][0-9]{0,8})?$`)
	awsKeyID         = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)|alias/[A-Za-z0-9/_-]{1,250})$`)
	awsRegion        = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	azureName        = regexp.MustCompile(`^[A-Za-z0-9-]{1,127}$`)
	plainValue       = regexp.MustCompile(`^[A-Za-z0-9 ._@+-]{1,64}$`)
)

const maxSessionsLimit = 1024

// ParseURI parses and checks a key URI:
//
//	"" or "softkms"                                   the in-database default
//	pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=root;object=sigil-root?pin-source=/etc/sigil/hsm.pin
//	awskms:key-id=1234abcd-...;region=eu-west-2       (or alias=NAME, or key-id=alias/NAME or an ARN)
//	cloudkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/1
//	azurekms:vault=V;name=K
//
// A pkcs11 URI needs module-path (absolute), exactly one of token, serial and
// slot-id, and object (the key's label); id is optional hex; pin-source is
// an absolute path. An awskms URI without key-id or alias names only where
// to create a key. A PIN or credential inside the URI is refused with an
// error wrapping ErrSecretInURI that says where to put it; an unknown
// attribute is refused too. Errors quote attribute names, never values of
// secret attributes.
func ParseURI(s string) (URI, error) {
	if s == "" || s == string(Soft) || s == string(Soft)+":" {
		return URI{Kind: Soft}, nil
	}
	scheme, _, ok := strings.Cut(s, ":")
	if !ok {
		return URI{}, fmt.Errorf("key uri: no scheme (want pkcs11:, awskms:, cloudkms:, azurekms: or softkms)")
	}
	switch Kind(strings.ToLower(scheme)) {
	case PKCS11:
		return parsePKCS11(s)
	case AWSKMS:
		return parseAWS(s)
	case CloudKMS:
		return parseCloudKMS(s)
	case AzureKMS:
		return parseAzure(s)
	case Soft:
		return URI{}, errors.New("key uri: softkms takes no attributes")
	}
	return URI{}, fmt.Errorf("key uri: unknown scheme %q (want pkcs11, awskms, cloudkms, azurekms or softkms)", scheme)
}

// attrs parses s with go.step.sm/crypto/kms/uri and returns its attributes
// (path and query merged), refusing secrets, unknown names and repeats.
func attrs(kind Kind, s string, allowed []string) (url.Values, error) {
	u, err := uri.Parse(s)
	if err != nil {
		// The parser's message quotes the whole URI, which may hold a PIN.
		return nil, fmt.Errorf("%s uri: malformed", kind)
	}
	if u.Fragment != "" || u.User != nil || u.Host != "" {
		return nil, fmt.Errorf("%s uri: malformed (want %s:attr=value;...)", kind, kind)
	}
	v := uri.Values(u)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range v {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range names {
		if where, ok := secretAttrs[strings.ToLower(k)]; ok {
			return nil, fmt.Errorf("%s uri: %w: %q is not accepted in a key URI: %s", kind, ErrSecretInURI, k, where)
		}
	}
	for _, k := range names {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%s uri: unknown attribute %q (known: %s)", kind, k, strings.Join(allowed, ", "))
		}
		if len(v[k]) != 1 {
			return nil, fmt.Errorf("%s uri: attribute %q given %d times", kind, k, len(v[k]))
		}
	}
	return v, nil
}

func parsePKCS11(s string) (URI, error) {
	v, err := attrs(PKCS11, s, pkcs11Attrs)
	if err != nil {
		return URI{}, err
	}
	u := URI{
		Kind:       PKCS11,
		ModulePath: v.Get("module-path"),
		Token:      v.Get("token"),
		Serial:     v.Get("serial"),
		Object:     v.Get("object"),
		PINSource:  v.Get("pin-source"),
	}
	if err := absPath("module-path", u.ModulePath, true); err != nil {
		return URI{}, err
	}
	if err := absPath("pin-source", u.PINSource, false); err != nil {
		return URI{}, err
	}
	selectors := 0
	for _, name := range []string{"token", "serial", "slot-id"} {
		if v.Has(name) {
			selectors++
		}
	}
	if selectors != 1 {
		return URI{}, errors.New("pkcs11 uri: give exactly one of token, serial and slot-id")
	}
	if u.Token != "" && !plainValue.MatchString(u.Token) || v.Has("token") && u.Token == "" {
		return URI{}, errors.New("pkcs11 uri: token label must be 1-64 letters, digits, spaces or ._@+-")
	}
	if v.Has("serial") && !plainValue.MatchString(u.Serial) {
		return URI{}, errors.New("pkcs11 uri: serial must be 1-64 letters, digits or ._@+-")
	}
	if v.Has("slot-id") {
		n, err := strconv.Atoi(v.Get("slot-id"))
		if err != nil || n < 0 {
			return URI{}, errors.New("pkcs11 uri: slot-id must be a non-negative integer")
		}
		u.SlotID = &n
	}
	if !plainValue.MatchString(u.Object) {
		return URI{}, errors.New("pkcs11 uri: object (the key's label) is required: 1-64 letters, digits, spaces or ._@+-")
	}
	if v.Has("id") {
		id, err := hex.DecodeString(v.Get("id"))
		if err != nil || len(id) == 0 || len(id) > 32 {
			return URI{}, errors.New("pkcs11 uri: id must be 1-32 bytes of hex")
		}
		u.ID = id
	}
	if v.Has("max-sessions") {
		n, err := strconv.Atoi(v.Get("max-sessions"))
		if err != nil || n < 2 || n > maxSessionsLimit {
			return URI{}, fmt.Errorf("pkcs11 uri: max-sessions must be an integer in [2, %d]", maxSessionsLimit)
		}
		u.MaxSessions = n
	}
	return u, nil
}

// absPath checks that a path attribute is clean and absolute: a relative
// module path would be looked up by the dynamic loader's search rules.
func absPath(name, p string, required bool) error {
	if p == "" {
		if required {
			return fmt.Errorf("pkcs11 uri: %s is required (an absolute path)", name)
		}
		return nil
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00;?") {
		return fmt.Errorf("pkcs11 uri: %s must be a clean absolute path", name)
	}
	return nil
}

func parseAWS(s string) (URI, error) {
	v, err := attrs(AWSKMS, s, awsAttrs)
	if err != nil {
		return URI{}, err
	}
	u := URI{
		Kind:            AWSKMS,
		KeyID:           v.Get("key-id"),
		Region:          v.Get("region"),
		Profile:         v.Get("profile"),
		CredentialsFile: v.Get("credentials-file"),
	}
	if v.Has("alias") {
		if v.Has("key-id") {
			return URI{}, errors.New("awskms uri: give key-id or alias, not both")
		}
		u.KeyID = "alias/" + strings.TrimPrefix(v.Get("alias"), "alias/")
	}
	if (v.Has("key-id") || v.Has("alias")) && !awsKeyID.MatchString(u.KeyID) {
		return URI{}, errors.New("awskms uri: key-id must be a key id, a key or alias ARN, or alias/NAME")
	}
	if strings.HasPrefix(u.KeyID, "alias/aws/") {
		return URI{}, errors.New("awskms uri: alias/aws/ names AWS managed keys, which cannot sign or be scheduled for deletion")
	}
	if v.Has("region") && !awsRegion.MatchString(u.Region) {
		return URI{}, errors.New("awskms uri: region must look like eu-west-2")
	}
	if v.Has("profile") && !plainValue.MatchString(u.Profile) {
		return URI{}, errors.New("awskms uri: profile must be 1-64 letters, digits or ._@+-")
	}
	if v.Has("credentials-file") {
		if p := u.CredentialsFile; !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return URI{}, errors.New("awskms uri: credentials-file must be a clean absolute path")
		}
	}
	return u, nil
}

func parseCloudKMS(s string) (URI, error) {
	_, rest, _ := strings.Cut(s, ":")
	if strings.ContainsAny(rest, ";?=") {
		if _, err := attrs(CloudKMS, s, nil); err != nil {
			return URI{}, err
		}
	}
	if !cloudKMSResource.MatchString(rest) {
		return URI{}, errors.New("cloudkms uri: want cloudkms:projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]")
	}
	return URI{Kind: CloudKMS, Resource: rest}, nil
}

func parseAzure(s string) (URI, error) {
	v, err := attrs(AzureKMS, s, azureAttrs)
	if err != nil {
		return URI{}, err
	}
	u := URI{Kind: AzureKMS, Vault: v.Get("vault"), Name: v.Get("name")}
	if !azureName.MatchString(u.Vault) || !azureName.MatchString(u.Name) {
		return URI{}, errors.New("azurekms uri: vault and name are required (letters, digits and -)")
	}
	if v.Has("version") && !azureName.MatchString(v.Get("version")) {
		return URI{}, errors.New("azurekms uri: version must be letters, digits and -")
	}
	return u, nil
}

// String returns the canonical form of u, which ParseURI accepts and maps
// back to u. It never contains a secret.
func (u URI) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+escape(v))
		}
	}
	switch u.Kind {
	case Soft:
		return string(Soft)
	case PKCS11:
		add("module-path", u.ModulePath)
		add("token", u.Token)
		add("serial", u.Serial)
		if u.SlotID != nil {
			add("slot-id", strconv.Itoa(*u.SlotID))
		}
		add("object", u.Object)
		if len(u.ID) > 0 {
			add("id", hex.EncodeToString(u.ID))
		}
		if u.MaxSessions != 0 {
			add("max-sessions", strconv.Itoa(u.MaxSessions))
		}
		s := "pkcs11:" + strings.Join(parts, ";")
		if u.PINSource != "" {
			s += "?pin-source=" + escape(u.PINSource)
		}
		return s
	case AWSKMS:
		add("key-id", u.KeyID)
		add("region", u.Region)
		add("profile", u.Profile)
		add("credentials-file", u.CredentialsFile)
		return "awskms:" + strings.Join(parts, ";")
	case CloudKMS:
		return "cloudkms:" + u.Resource
	case AzureKMS:
		add("vault", u.Vault)
		add("name", u.Name)
		return "azurekms:" + strings.Join(parts, ";")
	}
	return ""
}

// escape percent-encodes what would end or split an attribute value.
func escape(v string) string {
	return strings.NewReplacer("%", "%25", ";", "%3B", "?", "%3F", "&", "%26", "=", "%3D", "#", "%23", "+", "%2B", " ", "%20").Replace(v)
}
