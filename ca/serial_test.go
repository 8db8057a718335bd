package ca

import "testing"

func TestNormalizeSerial(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a30c6", "a30c6", true},
		{"0A30C6", "a30c6", true},    // openssl x509 -serial pads to whole octets
		{"0a:30:c6", "a30c6", true},  // colon-separated, as openssl -text prints
		{"0x0A30C6", "a30c6", true},  // 0x prefix
		{" 0a30c6\n", "a30c6", true}, // pasted with white space
		{"00000000000000000000000000000000000000000001", "1", true},
		{"", "", false},
		{"0", "", false}, // serials are positive
		{"-1", "", false},
		{"+1", "", false},
		{"xyz", "", false},
		{"01" + "0000000000000000000000000000000000000000", "", false}, // 21 octets
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeSerial(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("NormalizeSerial(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if got != tc.want {
				t.Errorf("NormalizeSerial(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if err != nil && KindOf(err) != Malformed {
				t.Errorf("error kind %s, want malformed", KindOf(err))
			}
		})
	}
}
