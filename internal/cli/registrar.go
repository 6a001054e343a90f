package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/registrar"
	regsqlite "github.com/sipwarden/sipwarden/internal/registrar/sqlite"
)

// registrarFlush is how often changed bindings are written to the store.
const registrarFlush = time.Second

// openRegistrar loads the bindings from storage.path/registrar.db into the
// process-wide registrar (before the first chain is built) and starts
// writing changes back.
func (s *server) openRegistrar(cfg *config.Config, reg prometheus.Registerer) error {
	st, err := regsqlite.Open(filepath.Join(cfg.Storage.Path, "registrar.db"))
	if err != nil {
		return fmt.Errorf("open registrar store: %w", err)
	}
	r, err := registrar.Load(st)
	if err != nil {
		st.Close()
		return err
	}
	s.deps.registrar = r
	s.deps.registrarMet = registrar.NewMetrics(reg, r)
	s.regStore = st
	s.regStop = r.Persist(registrarFlush, func(err error) { s.log.Error("registrar store", "err", err) })
	return nil
}

// closeRegistrar writes the last changes and closes the store.
func (s *server) closeRegistrar() {
	if s.regStop == nil {
		return
	}
	if err := s.regStop(); err != nil {
		s.log.Error("registrar flush failed", "err", err)
	}
	_ = s.regStore.Close()
	s.regStop = nil
}
