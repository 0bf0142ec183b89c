package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/Shopify/sarama"
)

// minSecretBytes is the contract's shortest producer secret (Amendment 1).
const minSecretBytes = 32

// signer signs each message for a monitor that holds producer keys (contract,
// Amendment 1): the record headers dm-key (the key's id) and dm-sig (lower-case
// hex HMAC-SHA256 of the value bytes exactly as sent). The monitor rejects an
// unsigned or wrongly signed message of a known exchange as `unauthenticated`.
type signer struct {
	keyID  []byte
	secret []byte
}

// newSigner builds the signer of a key issued to the exchange, or nil (messages
// go unsigned) when neither the key id nor the secret is set.
func newSigner(keyID, secretHex string) (*signer, error) {
	secretHex = strings.TrimSpace(secretHex)
	if keyID == "" && secretHex == "" {
		return nil, nil
	}
	if keyID == "" || secretHex == "" {
		return nil, errors.New("to sign, set both the key id (-key-id or DM_KEY_ID) and its secret (DM_KEY_SECRET, hex)")
	}
	secret, err := hex.DecodeString(secretHex)
	if err != nil {
		return nil, errors.New("DM_KEY_SECRET is not hex: give the secret of the keys file's row as it is")
	}
	if len(secret) < minSecretBytes {
		return nil, fmt.Errorf("DM_KEY_SECRET is %d bytes; the contract's keys have at least %d", len(secret), minSecretBytes)
	}
	return &signer{keyID: []byte(keyID), secret: secret}, nil
}

// signature is the dm-sig header of a message value.
func (s *signer) signature(value []byte) []byte {
	mac := hmac.New(sha256.New, s.secret)
	mac.Write(value)
	return []byte(hex.EncodeToString(mac.Sum(nil)))
}

// headers are the two record headers that sign value.
func (s *signer) headers(value []byte) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("dm-key"), Value: s.keyID},
		{Key: []byte("dm-sig"), Value: s.signature(value)},
	}
}
