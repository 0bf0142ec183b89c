package main

import (
	"bytes"
	"strings"
	"testing"
)

// RFC 4231, test case 6: a key longer than SHA-256's block (131 bytes of 0xaa).
func TestSignatureIsHexHMACSHA256OfTheValue(t *testing.T) {
	sign, err := newSigner("k1", strings.Repeat("aa", 131))
	if err != nil {
		t.Fatal(err)
	}
	got := sign.signature([]byte("Test Using Larger Than Block-Size Key - Hash Key First"))
	want := "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
	if string(got) != want {
		t.Errorf("signature = %s, want %s", got, want)
	}
	headers := sign.headers([]byte("x"))
	if len(headers) != 2 || string(headers[0].Key) != "dm-key" || string(headers[0].Value) != "k1" ||
		string(headers[1].Key) != "dm-sig" || !bytes.Equal(headers[1].Value, sign.signature([]byte("x"))) {
		t.Errorf("headers = %q", headers)
	}
}

func TestNoKeyMeansUnsignedAndAHalfGivenOrShortKeyIsRefused(t *testing.T) {
	if sign, err := newSigner("", ""); sign != nil || err != nil {
		t.Errorf("no key: %v, %v", sign, err)
	}
	secret := strings.Repeat("ab", 32)
	for _, c := range []struct{ id, secret, error string }{
		{"k1", "", "set both"},
		{"", secret, "set both"},
		{"k1", "xyz", "not hex"},
		{"k1", strings.Repeat("ab", 31), "31 bytes"},
	} {
		_, err := newSigner(c.id, c.secret)
		if err == nil || !strings.Contains(err.Error(), c.error) {
			t.Errorf("newSigner(%q, %q) = %v, want an error with %q", c.id, c.secret, err, c.error)
		}
		if err != nil && len(c.secret) > 8 && strings.Contains(err.Error(), c.secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	if message("dm.events", []byte(`{"type":"trade","product_id":"P"}`), nil).Headers != nil {
		t.Error("an unsigned message has headers")
	}
}
