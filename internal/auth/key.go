package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// KeyPrefix starts every key that GenerateKey makes, so a leaked key is
// recognisable (secret scanners, logs) and never mistaken for a JWT.
const KeyPrefix = "egk_"

// GenerateKey returns a new API key, KeyPrefix and 32 random bytes from r
// (nil: crypto/rand) in unpadded base64url (47 characters in all), and the
// hex SHA-256 to put in the config. Any string works as a key; the server
// only ever compares hashes.
func GenerateKey(r io.Reader) (key, sha256Hex string, err error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", "", fmt.Errorf("auth: generate key: %w", err)
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashKey(key), nil
}

// HashKey is the lowercase hex SHA-256 of key as the client sends it: what
// the config's sha256 field holds.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
