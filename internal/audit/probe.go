package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProbeOptions bound and direct a probe.
type ProbeOptions struct {
	// Target is "sip:HOST[:PORT]" (port 5060 by default); probed over UDP.
	Target string
	// TLSPort is the port where TLS is expected (default 5061; -1 skips the TLS check).
	TLSPort int
	// RootCAs verify the TLS certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// ServerName is the name the certificate must carry (default: the host).
	ServerName string
	// Rate is the most messages sent per second (default 10).
	Rate float64
	// MaxMessages bounds every message and connection the probe makes (default 60).
	MaxMessages int
	// Timeout is how long to wait for a final answer (default 2s).
	Timeout time.Duration
	// Extensions are the users tried for enumeration (default: common ones).
	Extensions []string
	// Source is the local address the probe sends from ("": chosen by the
	// system); pick one that is no configured peer of the target.
	Source string
	// Number is the international number of the open-relay check (default +442079460000,
	// a UK range reserved for drama, never allocated).
	Number string
}

// DefaultExtensions are the user names tried for enumeration.
var DefaultExtensions = []string{"100", "101", "200", "1000", "1001", "admin"}

// ErrBudget ends a probe whose message budget is spent.
var ErrBudget = errors.New("message budget spent")

type prober struct {
	opt    ProbeOptions
	host   string // as written in URIs
	port   int
	addr   netip.AddrPort
	conn   *net.UDPConn
	local  string
	sent   int
	last   time.Time
	r      *Report
	target string
	// what every answer showed
	servers    []string
	challenges []string
}

// Probe audits a SIP endpoint the operator owns. The caller must have
// established that (the CLI's --i-own-this). It never sends more than
// MaxMessages messages, nor faster than Rate.
func Probe(ctx context.Context, opt ProbeOptions) (*Report, error) {
	if opt.Rate <= 0 {
		opt.Rate = 10
	}
	if opt.MaxMessages <= 0 {
		opt.MaxMessages = 60
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Second
	}
	if opt.TLSPort == 0 {
		opt.TLSPort = 5061
	}
	if opt.Extensions == nil {
		opt.Extensions = DefaultExtensions
	}
	if opt.Number == "" {
		opt.Number = "+442079460000"
	}
	host, port, err := ParseTarget(opt.Target)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var laddr *net.UDPAddr
	if opt.Source != "" {
		ip, err := netip.ParseAddr(opt.Source)
		if err != nil {
			return nil, fmt.Errorf("source must be an IP address, got %q", opt.Source)
		}
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	}
	conn, err := net.DialUDP("udp", laddr, ua)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", opt.Target, err)
	}
	defer conn.Close()
	p := &prober{opt: opt, host: host, port: port, addr: ua.AddrPort(), conn: conn, local: conn.LocalAddr().String(),
		target: fmt.Sprintf("sip:%s:%d", uriHost(host), port)}
	if strings.Contains(host, ":") {
		p.host = "[" + host + "]"
	}
	p.r = &Report{Kind: "probe", Subject: p.target}
	// TLS first: an edge that bans a stranger for probing (sipwarden does)
	// would refuse the handshake after the SIP checks.
	steps := []func(context.Context) error{p.tlsCheck, p.options, p.relay, p.enumeration, p.malformed}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			if errors.Is(err, ErrBudget) {
				p.r.Notes = append(p.r.Notes, fmt.Sprintf("the budget of %d messages was spent: later checks did not run", opt.MaxMessages))
				break
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
	}
	p.leaks()
	p.md5()
	p.r.Notes = append(p.r.Notes, fmt.Sprintf("%d messages sent from %s", p.sent, p.local))
	p.r.finish()
	return p.r, nil
}

func uriHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// ParseTarget reads "sip:HOST[:PORT]" (port 5060 by default).
func ParseTarget(s string) (string, int, error) {
	rest, ok := strings.CutPrefix(s, "sip:")
	if !ok || rest == "" || strings.ContainsAny(rest, "@;?/ ") {
		return "", 0, fmt.Errorf("target must look like sip:HOST or sip:HOST:PORT, got %q", s)
	}
	host, port := rest, 5060
	if h, ps, err := net.SplitHostPort(rest); err == nil {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("port must be 1 to 65535 in %q", s)
		}
		host, port = h, n
	} else {
		host = strings.Trim(rest, "[]")
	}
	if host == "" {
		return "", 0, fmt.Errorf("target %q has no host", s)
	}
	return host, port, nil
}

func (p *prober) finding(check string, sev Severity, resp Responsibility, target, why, fix, evidence string) {
	if target == "" {
		target = p.target
	}
	p.r.Findings = append(p.r.Findings, Finding{Check: check, Severity: sev, Responsibility: resp, Target: target,
		Why: why, Fix: fix, Evidence: evidence})
}

// pace waits for the rate and counts a message against the budget.
func (p *prober) pace(ctx context.Context) error {
	if p.sent >= p.opt.MaxMessages {
		return ErrBudget
	}
	return p.wait(ctx)
}

// wait waits for the rate and counts a message.
func (p *prober) wait(ctx context.Context) error {
	gap := time.Duration(float64(time.Second) / p.opt.Rate)
	if wait := time.Until(p.last.Add(gap)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	p.last = time.Now()
	p.sent++
	return nil
}

func (p *prober) send(ctx context.Context, msg []byte) error {
	if err := p.pace(ctx); err != nil {
		return err
	}
	_, err := p.conn.Write(msg)
	if err != nil && !isRefused(err) {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// sendReserved sends a message the budget has already made room for.
func (p *prober) sendReserved(ctx context.Context, msg []byte) error {
	if err := p.wait(ctx); err != nil {
		return err
	}
	if _, err := p.conn.Write(msg); err != nil && !isRefused(err) {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "refused")
}

func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// request is one out-of-dialog request of the probe.
type request struct {
	method, user, branch, callID, fromTag string
	cseq                                  int
	toTag                                 string
	sdp                                   bool
	// timedOut: no final answer came in time and the probe cancelled it
	timedOut bool
}

func (p *prober) newRequest(method, user string) *request {
	return &request{method: method, user: user, branch: "z9hG4bK-audit-" + token(), callID: token() + "@sipwarden-audit",
		fromTag: token()[:10], cseq: 1, sdp: method == "INVITE"}
}

func (p *prober) ruri(user string) string {
	if user == "" {
		return "sip:" + p.host + ":" + strconv.Itoa(p.port)
	}
	return "sip:" + user + "@" + p.host + ":" + strconv.Itoa(p.port)
}

// build writes rq as method (INVITE, or its CANCEL / ACK / BYE).
func (p *prober) build(rq *request, method string, cseq int, branch string) []byte {
	var b bytes.Buffer
	ruri := p.ruri(rq.user)
	if rq.method == "REGISTER" {
		ruri = p.ruri("")
	}
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=%s;rport\r\n", p.local, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	to := "<" + p.ruri(rq.user) + ">"
	from := "<sip:audit@" + p.host + ">;tag=" + rq.fromTag
	if rq.method == "REGISTER" {
		from = to + ";tag=" + rq.fromTag
	}
	if rq.toTag != "" && method != "CANCEL" {
		to += ";tag=" + rq.toTag
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", from, to, rq.callID, cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:audit@%s>\r\n", p.local)
	if rq.method == "REGISTER" {
		b.WriteString("Expires: 60\r\n")
	}
	body := ""
	if rq.sdp && method == "INVITE" {
		ip, _, _ := net.SplitHostPort(p.local)
		af := "IP4"
		if strings.Contains(ip, ":") {
			af = "IP6"
		}
		body = fmt.Sprintf("v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", af, ip, af, ip)
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.Bytes()
}

// response is an answer, read leniently.
type response struct {
	code    int
	reason  string
	headers map[string][]string // lower-case names, compact forms expanded
	raw     string
}

func (r *response) get(name string) string {
	if v := r.headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

var compact = map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length", "c": "content-type"}

func parseResponse(b []byte) *response {
	text := string(b)
	head, _, _ := strings.Cut(text, "\r\n\r\n")
	sc := bufio.NewScanner(strings.NewReader(head))
	if !sc.Scan() {
		return nil
	}
	f := strings.SplitN(sc.Text(), " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return nil
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		return nil
	}
	r := &response{code: code, headers: map[string][]string{}, raw: head}
	if len(f) == 3 {
		r.reason = f[2]
	}
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if full, ok := compact[name]; ok {
			name = full
		}
		r.headers[name] = append(r.headers[name], strings.TrimSpace(val))
	}
	return r
}

// exchange sends rq and collects answers until a final one or the timeout.
// An INVITE that rings or is answered is ended at once (CANCEL, or ACK and
// BYE); a refused one is acknowledged.
func (p *prober) exchange(ctx context.Context, rq *request) ([]*response, error) {
	if rq.method == "INVITE" && p.sent+inviteCost > p.opt.MaxMessages {
		return nil, ErrBudget // no room to end the call it might start
	}
	if err := p.send(ctx, p.build(rq, rq.method, rq.cseq, rq.branch)); err != nil {
		return nil, err
	}
	var got []*response
	deadline := time.Now().Add(p.opt.Timeout)
	buf := make([]byte, 65535)
	cancelled := false
	// end sends what ends a call the probe started: within the budget
	// reserved for it (inviteCost), so never refused.
	end := func(method string, cseq int, branch string) error {
		return p.sendReserved(ctx, p.build(rq, method, cseq, branch))
	}
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, err := p.conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() || isRefused(err) {
				if rq.method == "INVITE" && !cancelled && len(got) > 0 {
					// only 100 Trying, no final answer: withdraw the call,
					// and wait once more for its 487 to acknowledge it
					cancelled, rq.timedOut = true, true
					if err := end("CANCEL", rq.cseq, rq.branch); err != nil {
						return got, err
					}
					deadline = time.Now().Add(p.opt.Timeout)
					continue
				}
				return got, nil
			}
			return got, fmt.Errorf("read: %w", err)
		}
		r := parseResponse(buf[:n])
		if r == nil || !strings.Contains(r.get("via"), rq.branch) {
			continue
		}
		if !strings.Contains(r.get("cseq"), rq.method) {
			continue // the answer to our CANCEL
		}
		p.observe(r)
		got = append(got, r)
		if r.code < 200 {
			if rq.method == "INVITE" && r.code > 100 && !cancelled {
				cancelled = true
				if err := end("CANCEL", rq.cseq, rq.branch); err != nil {
					return got, err
				}
				deadline = time.Now().Add(p.opt.Timeout)
			}
			continue
		}
		if rq.method == "INVITE" {
			rq.toTag = tagOf(r.get("to"))
			if r.code < 300 {
				_ = end("ACK", rq.cseq, "z9hG4bK-audit-"+token())
				err = end("BYE", rq.cseq+1, "z9hG4bK-audit-"+token())
			} else {
				err = end("ACK", rq.cseq, rq.branch)
			}
			if err != nil {
				return got, err
			}
		}
		return got, nil
	}
}

// inviteCost is what an INVITE may take of the budget: itself and what
// ends it (CANCEL, then ACK, or ACK and BYE when it was answered anyway).
const inviteCost = 4

func tagOf(h string) string {
	_, t, ok := strings.Cut(h, ";tag=")
	if !ok {
		return ""
	}
	t, _, _ = strings.Cut(t, ";")
	return strings.TrimSpace(t)
}

// observe keeps what an answer tells about the software and its challenges.
func (p *prober) observe(r *response) {
	for _, h := range []string{"server", "user-agent"} {
		for _, v := range r.headers[h] {
			s := h + ": " + v
			if !slices.Contains(p.servers, s) {
				p.servers = append(p.servers, s)
			}
		}
	}
	p.challenges = append(p.challenges, r.headers["www-authenticate"]...)
	p.challenges = append(p.challenges, r.headers["proxy-authenticate"]...)
}

func final(rs []*response) *response {
	for _, r := range rs {
		if r.code >= 200 {
			return r
		}
	}
	return nil
}

// signature sums up how the endpoint answered one request.
func signature(rs []*response) string {
	if len(rs) == 0 {
		return "no answer"
	}
	var codes []string
	for _, r := range rs {
		s := strconv.Itoa(r.code) + " " + r.reason
		if r.get("www-authenticate") != "" || r.get("proxy-authenticate") != "" {
			s += " (challenge)"
		}
		codes = append(codes, s)
	}
	return strings.Join(codes, ", ")
}

func (p *prober) options(ctx context.Context) error {
	rs, err := p.exchange(ctx, p.newRequest("OPTIONS", ""))
	if err != nil {
		return err
	}
	if f := final(rs); f != nil {
		p.finding("answers_unknown_source", Medium, Exposure, "",
			"It answers OPTIONS from an arbitrary source address: a scanner sweeping the internet finds it and learns it speaks SIP.",
			"Answer only the peers: a firewall that opens SIP to known sources (sipwarden firewall nft), or unknown_sources: drop on a sipwarden edge.",
			signature(rs))
	}
	return nil
}

func (p *prober) relay(ctx context.Context) error {
	rq := p.newRequest("INVITE", p.opt.Number)
	rs, err := p.exchange(ctx, rq)
	if err != nil {
		return err
	}
	rang := slices.ContainsFunc(rs, func(r *response) bool { return r.code > 100 && r.code < 300 })
	switch {
	case rang:
		p.finding("open_relay", High, TollFraud, "",
			fmt.Sprintf("It accepted an unauthenticated INVITE to the international number %s and relayed it (the probe cancelled it at once): anyone can make calls the operator pays for.", p.opt.Number),
			"Require authentication (digest) or a known source for every call, and refuse international destinations that are not needed.",
			signature(rs))
	case rq.timedOut:
		p.finding("invite_not_refused", Medium, TollFraud, "",
			fmt.Sprintf("It took an unauthenticated INVITE to %s (100 Trying) and gave no final answer within %s: it may be trying to relay it.", p.opt.Number, p.opt.Timeout),
			"Challenge or refuse calls from unknown sources at once.", signature(rs))
	}
	return nil
}

func (p *prober) enumeration(ctx context.Context) error {
	for _, method := range []string{"REGISTER", "INVITE", "OPTIONS"} {
		base := map[string]bool{}
		for range 2 {
			rs, err := p.exchange(ctx, p.newRequest(method, "sw"+token()[:8]))
			if err != nil {
				return err
			}
			base[signature(rs)] = true
		}
		if len(base) > 1 {
			p.r.Notes = append(p.r.Notes, method+": two invented users got different answers; enumeration not judged")
			continue
		}
		var baseline string
		for s := range base {
			baseline = s
		}
		var differ []string
		for _, ext := range p.opt.Extensions {
			rs, err := p.exchange(ctx, p.newRequest(method, ext))
			if err != nil {
				return err
			}
			if s := signature(rs); s != baseline {
				differ = append(differ, fmt.Sprintf("%s: %s", ext, s))
			}
		}
		if len(differ) > 0 {
			p.finding("extension_enumeration", Medium, Credentials, "",
				fmt.Sprintf("Its answers to %s tell existing users from invented ones (as svwar exploits): an attacker learns which accounts to guess passwords for.", method),
				"Answer unknown and existing users alike (a challenge for both: alwaysauthreject in Asterisk; sipwarden does it by design).",
				"invented user: "+baseline+"; "+strings.Join(differ, "; "))
		}
	}
	return nil
}

// md5 judges the challenges seen during the probe.
func (p *prober) md5() {
	if len(p.challenges) == 0 {
		return
	}
	strong := slices.ContainsFunc(p.challenges, func(c string) bool {
		c = strings.ToUpper(c)
		return strings.Contains(c, "SHA-256") || strings.Contains(c, "SHA-512-256")
	})
	if !strong {
		p.finding("md5_only", Medium, Credentials, "",
			"Every challenge offers MD5 digest only: a captured response is guessed offline at billions of passwords a second.",
			"Offer SHA-256 (RFC 8760) first and keep MD5 only for phones that know nothing else.",
			p.challenges[0])
	}
}

// leaks reports the software names seen in answers.
func (p *prober) leaks() {
	if len(p.servers) == 0 {
		return
	}
	p.finding("server_header_leak", Medium, Exposure, "",
		"Its answers name its software (Server or User-Agent): an attacker looks up the exploits of that version.",
		"Remove or blank the Server and User-Agent headers (sip.user_agent: \"\" on sipwarden; server_header=no in Kamailio).",
		strings.Join(p.servers, "; "))
}

func (p *prober) malformed(ctx context.Context) error {
	b1, b2 := "z9hG4bK-audit-"+token(), "z9hG4bK-audit-"+token()
	msgs := []struct {
		branch string
		text   []byte
	}{
		// no From, To or Call-ID, and a CSeq that is no number
		{b1, fmt.Appendf(nil, "OPTIONS %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nCSeq: x OPTIONS\r\nContent-Length: 0\r\n\r\n",
			p.ruri(""), p.local, b1)},
		// a start line of no protocol
		{b2, fmt.Appendf(nil, "OPTIONS %s SIP/9.9 audit\r\nVia: SIP/2.0/UDP %s;branch=%s\r\n\r\n", p.ruri(""), p.local, b2)},
	}
	var seen []string
	reveal := false
	buf := make([]byte, 65535)
	for _, m := range msgs {
		if err := p.send(ctx, m.text); err != nil {
			return err
		}
		deadline := time.Now().Add(p.opt.Timeout / 2)
		var r *response
		for r == nil {
			_ = p.conn.SetReadDeadline(deadline)
			n, err := p.conn.Read(buf)
			if err != nil {
				break
			}
			// late answers to earlier requests are not this one's
			if x := parseResponse(buf[:n]); x != nil && strings.Contains(x.get("via"), m.branch) {
				r = x
			}
		}
		if r != nil {
			p.observe(r)
			s := strconv.Itoa(r.code) + " " + r.reason
			for _, h := range []string{"server", "user-agent", "warning"} {
				if v := r.get(h); v != "" {
					s += "; " + h + ": " + v
					reveal = true
				}
			}
			seen = append(seen, s)
		}
	}
	switch {
	case reveal:
		p.finding("malformed_reveals_software", Medium, Exposure, "",
			"Malformed requests are answered with headers that name the software or its parser (Server, User-Agent, Warning): a fingerprint for an attacker.",
			"Drop malformed requests silently, or at least answer without Server, User-Agent and Warning.",
			strings.Join(seen, " | "))
	case len(seen) > 0:
		p.finding("malformed_answered", Low, Exposure, "",
			"Malformed requests from an unknown source are answered: how a parser replies to broken input fingerprints it.",
			"Drop malformed requests from unknown sources silently.", strings.Join(seen, " | "))
	}
	return nil
}

func (p *prober) tlsCheck(ctx context.Context) error {
	if p.opt.TLSPort < 0 {
		return nil
	}
	addr := net.JoinHostPort(strings.Trim(p.host, "[]"), strconv.Itoa(p.opt.TLSPort))
	where := "sips:" + net.JoinHostPort(strings.Trim(p.host, "[]"), strconv.Itoa(p.opt.TLSPort))
	name := p.opt.ServerName
	if name == "" {
		name = strings.Trim(p.host, "[]")
	}
	dial := func(cfg *tls.Config) (*tls.ConnectionState, error) {
		if err := p.pace(ctx); err != nil {
			return nil, err
		}
		// a handshake takes longer than a SIP answer: at least 3s
		timeout := max(p.opt.Timeout, 3*time.Second)
		nd := &net.Dialer{Timeout: timeout}
		if p.opt.Source != "" {
			nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.opt.Source)}
		}
		d := &tls.Dialer{NetDialer: nd, Config: cfg}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.(*tls.Conn).ConnectionState()
		return &st, nil
	}
	_, err := dial(&tls.Config{ServerName: name, RootCAs: p.opt.RootCAs, MinVersion: tls.VersionTLS12})
	if errors.Is(err, ErrBudget) {
		return err
	}
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var hostErr x509.HostnameError
		var authErr x509.UnknownAuthorityError
		var invErr x509.CertificateInvalidError
		if !errors.As(err, &certErr) && !errors.As(err, &hostErr) && !errors.As(err, &authErr) && !errors.As(err, &invErr) {
			// no TLS 1.2+ handshake at all: is it an old version, or nothing?
			st, err2 := dial(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) //nolint:gosec // probing for old versions is the point
			if errors.Is(err2, ErrBudget) {
				return err2
			}
			if err2 == nil {
				p.finding("tls_old_version", High, Encryption, where,
					fmt.Sprintf("TLS on port %d speaks only %s, broken versions that leak what they protect.", p.opt.TLSPort, tls.VersionName(st.Version)),
					"Allow TLS 1.2 and 1.3 only.", err.Error())
				return nil
			}
			p.finding("tls_not_offered", Medium, Encryption, where,
				fmt.Sprintf("No TLS on port %d: phones and trunks can only send credentials, numbers and SRTP keys in clear.", p.opt.TLSPort),
				"Offer SIP over TLS on 5061 with a certificate of a public or private CA the peers trust.", err.Error())
			return nil
		}
		p.finding("tls_certificate_invalid", Medium, Encryption, where,
			"The TLS certificate does not verify: peers that check it cannot connect, and peers that do not check it cannot tell an impostor.",
			"Install a certificate for the name peers use, from a CA they trust, and renew it before it expires.", err.Error())
	}
	st, err := dial(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) //nolint:gosec // probing for old versions is the point
	if errors.Is(err, ErrBudget) {
		return err
	}
	if err == nil {
		p.finding("tls_legacy_accepted", Low, Encryption, where,
			fmt.Sprintf("TLS on port %d still accepts %s; the guide asks for TLS 1.2 or later.", p.opt.TLSPort, tls.VersionName(st.Version)),
			"Set the minimum TLS version to 1.2.", "")
	}
	return nil
}
