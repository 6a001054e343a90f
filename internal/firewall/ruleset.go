package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sipwarden/sipwarden/internal/config"
	"github.com/sipwarden/sipwarden/internal/sip"
)

// RulesetOptions add what the configuration does not say.
type RulesetOptions struct {
	// RTPFrom and RTPTo, when RTPFrom is not zero, are a UDP port range
	// (media) opened to the peers like the SIP ports.
	RTPFrom, RTPTo uint16
	// Table is the name of the table to print (default "sipwarden").
	Table string
}

// Ruleset returns an nftables ruleset (the text `nft -f` reads) that opens
// cfg's SIP listener ports, and the RTP range of opt, only to the prefixes of
// its trunks and upstreams. Other ports are left alone (policy accept), so
// the ruleset can be loaded beside an existing firewall.
//
// A trunk that has no allow list (it may send from anywhere: phones that
// authenticate with digest) makes the SIP ports open to every source; the
// ruleset says so in a comment rather than pretend to protect them.
func Ruleset(cfg *config.Config, opt RulesetOptions) string {
	table := opt.Table
	if table == "" {
		table = "sipwarden"
	}
	var peers []netip.Prefix
	openToAll := ""
	for _, t := range cfg.Trunks {
		if len(t.Allow) == 0 {
			openToAll = t.Name
		}
		peers = append(peers, t.Allow...)
	}
	for _, u := range cfg.Upstreams {
		peers = append(peers, u.Allow...)
		for _, tg := range u.Targets {
			peers = append(peers, netip.PrefixFrom(tg.Addr.Addr(), tg.Addr.Addr().BitLen()))
		}
	}
	var udpPorts, tcpPorts []uint16
	for _, l := range cfg.Listen {
		port := l.Addr.Port()
		if l.Transport == sip.UDP {
			udpPorts = appendUnique(udpPorts, port)
		} else {
			tcpPorts = appendUnique(tcpPorts, port)
		}
	}
	v4, v6 := Ranges(peers)

	var b strings.Builder
	fmt.Fprintf(&b, "# nftables ruleset for sipwarden, generated from %s by `sipwarden firewall nft`.\n", cfg.File)
	b.WriteString("# It opens the SIP ports")
	if opt.RTPFrom != 0 {
		b.WriteString(" and the RTP range")
	}
	b.WriteString(" only to the configured trunks and upstreams and leaves\n")
	b.WriteString("# every other port alone. Review it, then load it with: nft -f FILE\n")
	b.WriteString("# (bans are mirrored into a separate table when firewall.nftables is on).\n")
	fmt.Fprintf(&b, "table inet %s {\n", table)
	writeSet(&b, "peers4", "ipv4_addr", v4)
	writeSet(&b, "peers6", "ipv6_addr", v6)
	b.WriteString("\tchain input {\n")
	b.WriteString("\t\ttype filter hook input priority filter; policy accept;\n")
	writeRules := func(match, what string) {
		if openToAll != "" {
			fmt.Fprintf(&b, "\t\t# trunk %q has no allow list: %s stays open to every source\n", openToAll, what)
			return
		}
		fmt.Fprintf(&b, "\t\t%s ip saddr @peers4 accept\n", match)
		fmt.Fprintf(&b, "\t\t%s ip6 saddr @peers6 accept\n", match)
		fmt.Fprintf(&b, "\t\t%s counter drop comment \"%s from strangers\"\n", match, what)
	}
	if len(udpPorts) > 0 {
		writeRules("udp dport "+portList(udpPorts), "SIP over UDP")
	}
	if len(tcpPorts) > 0 {
		writeRules("tcp dport "+portList(tcpPorts), "SIP over TCP/TLS")
	}
	if opt.RTPFrom != 0 {
		// Media is opened to the peers even when SIP is open to all: a
		// phone's media comes from where its signalling came from, which
		// a static ruleset cannot know, so say so.
		if openToAll != "" {
			fmt.Fprintf(&b, "\t\t# trunk %q has no allow list: the RTP range stays open to every source\n", openToAll)
		} else {
			match := fmt.Sprintf("udp dport %d-%d", opt.RTPFrom, opt.RTPTo)
			fmt.Fprintf(&b, "\t\t%s ip saddr @peers4 accept\n", match)
			fmt.Fprintf(&b, "\t\t%s ip6 saddr @peers6 accept\n", match)
			fmt.Fprintf(&b, "\t\t%s counter drop comment \"RTP from strangers\"\n", match)
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func appendUnique(ports []uint16, p uint16) []uint16 {
	if slices.Contains(ports, p) {
		return ports
	}
	ports = append(ports, p)
	slices.Sort(ports)
	return ports
}

func portList(ports []uint16) string {
	if len(ports) == 1 {
		return fmt.Sprint(ports[0])
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprint(p)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func writeSet(b *strings.Builder, name, typ string, rs []Range) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n", name, typ)
	if len(rs) > 0 {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = rangeText(r)
		}
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(parts, ",\n\t\t\t     "))
	}
	b.WriteString("\t}\n")
}

// rangeText writes a range as nft reads it: an address, a prefix when the
// range is exactly one, or from-to.
func rangeText(r Range) string {
	if r.From == r.To {
		return r.From.String()
	}
	for bits := r.From.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && lastAddr(p) == r.To {
			return p.String()
		}
	}
	return r.From.String() + "-" + r.To.String()
}
