package registrar

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipwarden/sipwarden/internal/chain"
	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/events"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// Bounds on what one REGISTER may carry.
const (
	maxContactsPerRequest = 16
	maxURILen             = 512
	maxUserAgentLen       = 128
	maxInstanceLen        = 128
	maxCallIDLen          = 256
)

// Metrics are the registrar's collectors; they live for the process.
type Metrics struct {
	results  *prometheus.CounterVec
	bindings prometheus.GaugeFunc
}

// NewMetrics registers the collectors on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer, r *Registrar) *Metrics {
	m := &Metrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipwarden_registrar_requests_total",
		Help: "REGISTERs answered by the registrar, by trunk and result (registered, interval_too_brief, too_many_contacts, out_of_order, bad_request).",
	}, []string{"trunk", "result"})}
	m.bindings = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sipwarden_registrar_bindings",
		Help: "Contact bindings held (expired ones not yet swept included).",
	}, func() float64 { return float64(r.Len()) })
	if reg != nil {
		reg.MustRegister(m.results, m.bindings)
	}
	return m
}

// Stage is the chain stage "registrar".
type Stage struct {
	reg    *Registrar
	met    *Metrics
	bus    *events.Bus
	trunks map[*config.Trunk]Options
	now    func() time.Time
	// holdFlow keeps the TCP or TLS connection a binding was registered
	// over open until the binding expires (nil: not held).
	holdFlow func(t sip.Transport, src netip.AddrPort, until time.Time)
}

// NewStage builds the registrar stage of cfg over the process-wide registrar.
func NewStage(cfg *config.Config, reg *Registrar, met *Metrics, bus *events.Bus) (*Stage, error) {
	if met == nil {
		met = NewMetrics(nil, reg)
	}
	s := &Stage{reg: reg, met: met, bus: bus, trunks: map[*config.Trunk]Options{}, now: time.Now}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		if g := t.Digest.Registrar; t.Auth == config.AuthDigest && g.Enabled {
			s.trunks[t] = Options{MinExpires: g.MinExpires, MaxExpires: g.MaxExpires, DefaultExpires: g.DefaultExpires, MaxContacts: g.MaxContacts}
		}
	}
	return s, nil
}

// SetCountry makes the stage report registrations from a country an account
// never registered from (country: a GeoIP lookup, ISO 3166-1 alpha-2).
func (s *Stage) SetCountry(country func(netip.Addr) string) {
	for t, o := range s.trunks {
		o.Country = country
		s.trunks[t] = o
	}
}

// SetFlowHold makes the stage hold the stream connection a phone registered
// over until its bindings from that connection expire (RFC 5626 flows): a
// phone that only sends keep-alives between registrations keeps the
// connection that calls to it are sent on. Only an authenticated
// registration holds a connection, so strangers cannot.
func (s *Stage) SetFlowHold(hold func(t sip.Transport, src netip.AddrPort, until time.Time)) {
	s.holdFlow = hold
}

// Enabled reports whether a trunk of the configuration has a registrar.
func (s *Stage) Enabled() bool { return len(s.trunks) > 0 }

// Name implements chain.Stage.
func (*Stage) Name() string { return "registrar" }

// Handle answers the authenticated REGISTERs of trunks with a registrar.
func (s *Stage) Handle(req *chain.Request) chain.Verdict {
	if req.PeerKind != chain.PeerTrunk || req.Account == "" || !req.Initial() || req.Msg.Method() != sip.REGISTER {
		return chain.Next()
	}
	o, ok := s.trunks[req.Trunk]
	if !ok {
		return chain.Next()
	}
	trunk := req.Trunk.Name
	r, bad := parseRegister(req)
	if bad != "" {
		s.count(trunk, "bad_request")
		return chain.Verdict{Action: chain.Reply, Code: 400, Reason: "bad_register", Warning: bad}
	}
	now := s.now()
	res := s.reg.Apply(trunk+"\x00"+req.Account, o, &r, now)
	for _, c := range res.Changes {
		kind := events.RegistrationNewSource
		detail := "account " + req.Account + ", before from " + c.Previous.Addr().String()
		switch c.Kind {
		case Replaced:
			kind = events.BindingReplaced
			detail = "account " + req.Account + ", binding taken over from " + c.Previous.String()
		case NewCountry:
			detail = "account " + req.Account + ", country " + c.Country + ", before from " + strings.Join(c.Countries, " ")
		}
		s.bus.Publish(events.Event{Kind: kind, Stage: "registrar", Reason: c.Kind.String(), Src: req.Src,
			Transport: req.Transport.String(), Trunk: trunk, Method: "REGISTER", Detail: detail})
	}
	switch res.Code {
	case 200:
		s.count(trunk, "registered")
		if s.holdFlow != nil && req.Transport.Reliable() {
			var until time.Time // zero when no binding of this flow is left
			for _, b := range res.Bindings {
				if b.Source == req.Src && b.Transport == req.Transport && b.Expires.After(until) {
					until = b.Expires
				}
			}
			s.holdFlow(req.Transport, req.Src, until)
		}
		return chain.Verdict{Action: chain.Reply, Code: 200, Reason: "registered", Header: contactLines(res.Bindings, now)}
	case 423:
		s.count(trunk, "interval_too_brief")
		return chain.Verdict{Action: chain.Reply, Code: 423, Reason: "interval_too_brief",
			Header: "Min-Expires: " + strconv.FormatInt(int64(res.MinExpires/time.Second), 10)}
	case 403:
		s.count(trunk, "too_many_contacts")
		return chain.Verdict{Action: chain.Reply, Code: 403, Reason: "too_many_contacts", Warning: "too many registered contacts for this account"}
	case 500:
		s.count(trunk, "out_of_order")
		return chain.Verdict{Action: chain.Reply, Code: 500, Reason: "register_out_of_order", RetryAfter: 1,
			Warning: "CSeq is not higher than the binding's"}
	}
	s.count(trunk, "bad_request")
	return chain.Verdict{Action: chain.Reply, Code: 400, Reason: "bad_register", Warning: "Contact * needs Expires: 0 and no other contact"}
}

func (s *Stage) count(trunk, result string) { s.met.results.WithLabelValues(trunk, result).Inc() }

// parseRegister reads the Contact, Expires, Call-ID, CSeq and User-Agent of
// a REGISTER. bad explains a malformed request.
func parseRegister(req *chain.Request) (r Request, bad string) {
	m := req.Msg
	r = Request{Expires: -1, Source: req.Src, Transport: req.Transport, Local: req.Local}
	if v := m.Get(sip.HdrExpires); v != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 32)
		if err != nil {
			return r, "Expires must be a number of seconds"
		}
		r.Expires = int64(n)
	}
	callID := m.CallID()
	if len(callID) > maxCallIDLen {
		return r, "Call-ID too long"
	}
	r.CallID = string(callID)
	r.CSeq, _ = m.CSeq()
	ua := m.Get(sip.HdrUserAgent)
	if len(ua) > maxUserAgentLen {
		ua = ua[:maxUserAgentLen]
	}
	r.UserAgent = string(ua)
	for i := m.Find(sip.HdrContact, 0); i >= 0; i = m.Find(sip.HdrContact, i+1) {
		rest := m.Header(i).Value
		for len(rest) > 0 {
			na, next, err := sip.ParseNameAddr(rest)
			if err != nil {
				return r, "malformed Contact"
			}
			rest = next
			if string(na.URI) == "*" {
				r.Wildcard = true
				continue
			}
			if len(r.Contacts) == maxContactsPerRequest {
				return r, "too many Contact entries"
			}
			if len(na.URI) > maxURILen {
				return r, "Contact URI too long"
			}
			if _, err := sip.ParseURI(na.URI); err != nil {
				return r, "malformed Contact URI"
			}
			c := Contact{URI: string(na.URI), Expires: -1}
			if v, ok := sip.Param(na.Params, "expires"); ok {
				n, err := strconv.ParseUint(string(v), 10, 32)
				if err != nil {
					return r, "the expires parameter must be a number of seconds"
				}
				c.Expires = int64(n)
			}
			if v, ok := sip.Param(na.Params, "+sip.instance"); ok && len(v) <= maxInstanceLen {
				c.Instance = string(v)
			}
			r.Contacts = append(r.Contacts, c)
		}
	}
	return r, ""
}

// contactLines lists the bindings as Contact header lines with their remaining expiry.
func contactLines(bs []Binding, now time.Time) string {
	var b strings.Builder
	for i, x := range bs {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("Contact: <")
		b.WriteString(x.Contact)
		b.WriteString(">;expires=")
		b.WriteString(strconv.FormatInt(int64(max(0, x.Expires.Sub(now).Round(time.Second)/time.Second)), 10))
	}
	return b.String()
}

// Lookup returns the bindings of an account of trunk, most recent first:
// where calls to the account would go.
func (s *Stage) Lookup(trunk, account string) []Binding {
	return s.reg.Bindings(trunk+"\x00"+account, s.now())
}
