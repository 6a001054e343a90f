package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
)

// certStore holds the TLS material and reloads it from its files.
type certStore struct {
	certFile, keyFile, clientCAFile, rootCAFile string

	mu       sync.RWMutex
	cert     *tls.Certificate
	modTime  time.Time
	clientCA *x509.CertPool
	rootCA   *x509.CertPool
}

func newCertStore(certFile, keyFile, clientCA, rootCA string) (*certStore, error) {
	cs := &certStore{certFile: certFile, keyFile: keyFile, clientCAFile: clientCA, rootCAFile: rootCA}
	if err := cs.reload(); err != nil {
		return nil, err
	}
	return cs, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return p, nil
}

func (cs *certStore) reload() error {
	var cert *tls.Certificate
	var mod time.Time
	if cs.certFile != "" {
		if cs.keyFile == "" {
			return errors.New("tls.key is required with tls.cert")
		}
		c, err := tls.LoadX509KeyPair(cs.certFile, cs.keyFile)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		cert = &c
		if st, err := os.Stat(cs.certFile); err == nil {
			mod = st.ModTime()
		}
	}
	clientCA, err := loadPool(cs.clientCAFile)
	if err != nil {
		return fmt.Errorf("load client CA: %w", err)
	}
	rootCA, err := loadPool(cs.rootCAFile)
	if err != nil {
		return fmt.Errorf("load root CA: %w", err)
	}
	cs.mu.Lock()
	cs.cert, cs.modTime, cs.clientCA, cs.rootCA = cert, mod, clientCA, rootCA
	cs.mu.Unlock()
	return nil
}

// changed reports whether the certificate or key file changed since the last load.
func (cs *certStore) changed() (bool, error) {
	st, err := os.Stat(cs.certFile)
	if err != nil {
		return false, err
	}
	kst, err := os.Stat(cs.keyFile)
	if err != nil {
		return false, err
	}
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return st.ModTime() != cs.modTime || kst.ModTime().After(cs.modTime), nil
}

func (cs *certStore) current() *tls.Certificate {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return cs.cert
}

func (cs *certStore) serverConfig() *tls.Config {
	cs.mu.RLock()
	clientCA := cs.clientCA
	cs.mu.RUnlock()
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := cs.current(); c != nil {
				return c, nil
			}
			return nil, errors.New("no certificate")
		},
	}
	if clientCA != nil {
		cfg.ClientCAs = clientCA
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg
}

// clientTLSConfig is used when sipwarden dials a TLS peer.
func (m *Manager) clientTLSConfig(dst netip.AddrPort) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         dst.Addr().String(),
		InsecureSkipVerify: m.opt.InsecureSkipVerifyUpstream, //nolint:gosec // explicit test-only option
	}
	if m.tls != nil {
		m.tls.mu.RLock()
		cfg.RootCAs = m.tls.rootCA
		cert := m.tls.cert
		m.tls.mu.RUnlock()
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
	}
	return cfg
}
