// Package mtls turns a node's ed25519 network key into mutual-TLS
// configurations that pin peers by key, not by certificate authority: the
// committee file lists every authority's ed25519 key, and a connection is
// accepted only if the other side proves possession of one of them. The
// rollup kernel never imports this package (it would link crypto/tls).
package mtls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ErrUnpinnedPeer is returned when a peer's key is not the pinned one.
var ErrUnpinnedPeer = errors.New("mtls: peer key not pinned")

// NewCertificate returns a self-signed X.509 certificate for the key. Its
// validity is long and irrelevant: peers check the key, not the dates.
func NewCertificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dsn"},
		DNSNames:     []string{"dsn"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// keyOf extracts the ed25519 key of a DER certificate.
func keyOf(der []byte) (ed25519.PublicKey, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse peer certificate: %w", err)
	}
	k, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an ed25519 key", ErrUnpinnedPeer)
	}
	return k, nil
}

func pinned(allowed []ed25519.PublicKey) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("%w: no certificate", ErrUnpinnedPeer)
		}
		k, err := keyOf(raw[0])
		if err != nil {
			return err
		}
		for _, a := range allowed {
			if bytes.Equal(a, k) {
				return nil
			}
		}
		return fmt.Errorf("%w: %x", ErrUnpinnedPeer, []byte(k))
	}
}

// ServerConfig accepts only clients whose key is one of allowed. TLS 1.3.
func ServerConfig(own tls.Certificate, allowed []ed25519.PublicKey) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{own},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: pinned(allowed),
	}
}

// ClientConfig accepts only a server whose key is peer. TLS 1.3.
func ClientConfig(own tls.Certificate, peer ed25519.PublicKey) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{own},
		InsecureSkipVerify:    true, // NB: replaced by the key pin below, checked on every handshake
		VerifyPeerCertificate: pinned([]ed25519.PublicKey{peer}),
		ServerName:            "dsn",
	}
}

// PeerKey returns the ed25519 key the peer presented.
func PeerKey(cs tls.ConnectionState) (ed25519.PublicKey, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: no peer certificate", ErrUnpinnedPeer)
	}
	return keyOf(cs.PeerCertificates[0].Raw)
}
