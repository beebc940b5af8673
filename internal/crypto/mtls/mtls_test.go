package mtls

import (
	"crypto/ed25519"
	"crypto/tls"
	"io"
	"math/rand"
	"net"
	"testing"
)

func identity(t *testing.T, seed int64) (ed25519.PublicKey, tls.Certificate) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.New(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := NewCertificate(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, cert
}

// handshake runs one TLS connection and returns both sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (seen ed25519.PublicKey, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	keyc := make(chan ed25519.PublicKey, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			k, _ := PeerKey(tc.ConnectionState())
			keyc <- k
			_, err = io.ReadAll(tc)
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		_, err = c.Write([]byte("hello"))
		c.Close()
	}
	serverErr = <-done
	select {
	case seen = <-keyc:
	default:
	}
	return seen, serverErr, err
}

func TestPinnedKeysConnect(t *testing.T) {
	sPub, sCert := identity(t, 1)
	cPub, cCert := identity(t, 2)
	seen, serr, cerr := handshake(t, ServerConfig(sCert, []ed25519.PublicKey{cPub}), ClientConfig(cCert, sPub))
	if serr != nil || cerr != nil {
		t.Fatalf("pinned handshake: server %v client %v", serr, cerr)
	}
	if !seen.Equal(cPub) {
		t.Fatal("server did not see the client's key")
	}
}

func TestUnpinnedKeysAreRefused(t *testing.T) {
	sPub, sCert := identity(t, 1)
	cPub, cCert := identity(t, 2)
	otherPub, otherCert := identity(t, 3)
	// Server does not know the client.
	if _, serr, _ := handshake(t, ServerConfig(sCert, []ed25519.PublicKey{otherPub}), ClientConfig(cCert, sPub)); serr == nil {
		t.Fatal("server accepted an unpinned client")
	}
	// Client expects another server.
	if _, _, cerr := handshake(t, ServerConfig(otherCert, []ed25519.PublicKey{cPub}), ClientConfig(cCert, sPub)); cerr == nil {
		t.Fatal("client accepted an unpinned server")
	}
}
