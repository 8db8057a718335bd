package api_test

import (
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/sigil-ca/sigil/api"
)

// TestSerialForms: a serial is found however people copy it (openssl pads
// to whole octets and prints upper case, sometimes with colons).
func TestSerialForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issued := e.sign(t, e.admin, "tls-server", "serial.example.com")
	n, ok := new(big.Int).SetString(issued.Serial, 16)
	if !ok {
		t.Fatalf("serial %q is not hex", issued.Serial)
	}
	padded := strings.ToUpper("00" + issued.Serial)
	var colons []string
	for _, b := range n.Bytes() {
		colons = append(colons, fmt.Sprintf("%02X", b))
	}
	for _, form := range []string{issued.Serial, padded, strings.Join(colons, ":")} {
		t.Run(form, func(t *testing.T) {
			var c api.Certificate
			e.getJSON(t, "GET", "/v1/certificates/"+form, e.admin, nil, http.StatusOK, &c)
			if c.Serial != issued.Serial {
				t.Errorf("serial %q, want %q", c.Serial, issued.Serial)
			}
			var list api.CertificateList
			e.getJSON(t, "GET", "/v1/certificates?serial="+form, e.admin, nil, http.StatusOK, &list)
			if len(list.Certificates) != 1 {
				t.Errorf("filter serial=%s: %d results, want 1", form, len(list.Certificates))
			}
		})
	}
	resp, data := e.do(t, "GET", "/v1/certificates/not-hex", e.admin, nil)
	checkError(t, resp, data, http.StatusBadRequest, "malformed")
}
