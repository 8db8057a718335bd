package keybackend

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	slot := 3
	tests := []struct {
		name string
		in   string
		want URI
	}{
		{"empty is the in-database default", "", URI{Kind: Soft}},
		{"softkms", "softkms", URI{Kind: Soft}},
		{"pkcs11 token and object", "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=root;object=sigil-root",
			URI{Kind: PKCS11, ModulePath: "/usr/lib/softhsm/libsofthsm2.so", Token: "root", Object: "sigil-root"}},
		{"pkcs11 pin-source in the query", "pkcs11:module-path=/m.so;token=root;object=k?pin-source=/etc/sigil/hsm.pin",
			URI{Kind: PKCS11, ModulePath: "/m.so", Token: "root", Object: "k", PINSource: "/etc/sigil/hsm.pin"}},
		{"pkcs11 slot, id, max-sessions", "pkcs11:module-path=/m.so;slot-id=3;object=k;id=0a1b;max-sessions=8",
			URI{Kind: PKCS11, ModulePath: "/m.so", SlotID: &slot, Object: "k", ID: []byte{0x0a, 0x1b}, MaxSessions: 8}},
		{"pkcs11 serial", "pkcs11:module-path=/m.so;serial=1a2b3c;object=k",
			URI{Kind: PKCS11, ModulePath: "/m.so", Serial: "1a2b3c", Object: "k"}},
		{"pkcs11 label with a space", "pkcs11:module-path=/m.so;token=my%20root;object=k",
			URI{Kind: PKCS11, ModulePath: "/m.so", Token: "my root", Object: "k"}},
		{"awskms key id", "awskms:key-id=1234abcd-12ab-34cd-56ef-1234567890ab;region=eu-west-2",
			URI{Kind: AWSKMS, KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab", Region: "eu-west-2"}},
		{"awskms alias attribute", "awskms:alias=sigil-intermediate",
			URI{Kind: AWSKMS, KeyID: "alias/sigil-intermediate"}},
		{"awskms alias as key id", "awskms:key-id=alias/sigil-kek;profile=ca",
			URI{Kind: AWSKMS, KeyID: "alias/sigil-kek", Profile: "ca"}},
		{"awskms arn", "awskms:key-id=arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			URI{Kind: AWSKMS, KeyID: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}},
		{"awskms where to create", "awskms:region=us-east-1;credentials-file=/etc/sigil/aws-config",
			URI{Kind: AWSKMS, Region: "us-east-1", CredentialsFile: "/etc/sigil/aws-config"}},
		{"cloudkms version", "cloudkms:projects/my-project/locations/global/keyRings/sigil/cryptoKeys/intermediate/cryptoKeyVersions/1",
			URI{Kind: CloudKMS, Resource: "projects/my-project/locations/global/keyRings/sigil/cryptoKeys/intermediate/cryptoKeyVersions/1"}},
		{"azurekms", "azurekms:vault=sigil-vault;name=intermediate",
			URI{Kind: AzureKMS, Vault: "sigil-vault", Name: "intermediate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURI(tc.in)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseURI(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			again, err := ParseURI(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("String() %q does not parse back: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseURIRefuses(t *testing.T) {
	const pin = "123456-secret-pin"
	tests := []struct {
		name, in, want string
		secret         bool
	}{
		{"pin-value", "pkcs11:module-path=/m.so;token=root;object=k?pin-value=" + pin, "pin-source", true},
		{"pin-value in the path", "pkcs11:module-path=/m.so;token=root;object=k;pin-value=" + pin, "SIGIL_HSM_PIN", true},
		{"pin-prompt", "pkcs11:module-path=/m.so;token=root;object=k?pin-prompt=PIN", "cannot prompt", true},
		{"aws secret", "awskms:key-id=alias/x;secret-access-key=" + pin, "usual chain", true},
		{"aws secret, config spelling", "awskms:key-id=alias/x;aws_secret_access_key=" + pin, "usual chain", true},
		{"no scheme", "root-key", "no scheme", false},
		{"unknown scheme", "yubikey:slot-id=9c", "unknown scheme", false},
		{"softkms with attributes", "softkms:path=/x", "no attributes", false},
		{"no module path", "pkcs11:token=root;object=k", "module-path is required", false},
		{"relative module", "pkcs11:module-path=libsofthsm2.so;token=root;object=k", "absolute", false},
		{"unclean module", "pkcs11:module-path=/usr/lib/../lib/m.so;token=root;object=k", "absolute", false},
		{"no token", "pkcs11:module-path=/m.so;object=k", "exactly one", false},
		{"two selectors", "pkcs11:module-path=/m.so;token=a;serial=b;object=k", "exactly one", false},
		{"no object", "pkcs11:module-path=/m.so;token=root", "object", false},
		{"typo", "pkcs11:module-path=/m.so;token=root;objet=k", "unknown attribute", false},
		{"repeated", "pkcs11:module-path=/m.so;token=a;token=b;object=k", "2 times", false},
		{"bad id", "pkcs11:module-path=/m.so;token=root;object=k;id=zz", "hex", false},
		{"bad slot", "pkcs11:module-path=/m.so;slot-id=-1;object=k", "slot-id", false},
		{"one session", "pkcs11:module-path=/m.so;token=root;object=k;max-sessions=1", "max-sessions", false},
		{"relative pin source", "pkcs11:module-path=/m.so;token=root;object=k?pin-source=pin.txt", "pin-source", false},
		{"aws both", "awskms:key-id=alias/a;alias=b", "not both", false},
		{"aws bad key id", "awskms:key-id=not a key", "key-id", false},
		{"aws managed alias", "awskms:alias=aws/acm", "AWS managed", false},
		{"aws region", "awskms:key-id=alias/a;region=Mars", "region", false},
		{"cloudkms short", "cloudkms:projects/p", "cloudkms:projects", false},
		{"azure no vault", "azurekms:name=k", "vault and name", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseURI(tc.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) accepted", tc.in)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if got := errors.Is(err, ErrSecretInURI); got != tc.secret {
				t.Errorf("errors.Is(err, ErrSecretInURI) = %v, want %v", got, tc.secret)
			}
			if strings.Contains(err.Error(), pin) {
				t.Errorf("error repeats the secret: %q", err)
			}
		})
	}
}

// FuzzParseURI checks that no input panics, that an accepted URI never holds
// a PIN, and that every accepted URI's canonical form parses back to it.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"", "softkms",
		"pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=root;object=sigil-root?pin-source=/etc/pin",
		"pkcs11:module-path=/m.so;slot-id=0;object=k;id=%0a%0b;max-sessions=4",
		"pkcs11:module-path=/m.so;token=root;object=k?pin-value=1234",
		"awskms:key-id=1234abcd-12ab-34cd-56ef-1234567890ab;region=eu-west-2",
		"awskms:alias=sigil;profile=p;credentials-file=/x",
		"cloudkms:projects/my-project/locations/global/keyRings/r/cryptoKeys/k",
		"azurekms:vault=v;name=n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		canon := u.String()
		if strings.Contains(strings.ToLower(canon), "pin-value") {
			t.Fatalf("accepted %q holds a pin-value", s)
		}
		again, err := ParseURI(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if !reflect.DeepEqual(again, u) {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, u, canon, again)
		}
	})
}
