//go:build linux

package firewall

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// chunk is how many set elements go into one netlink transaction. Larger
// ban lists are written in several transactions (the gate still enforces
// every ban meanwhile).
const chunk = 2048

// Mirror owns one nftables table (inet family) holding the banned ranges and
// the rules that drop their packets to sipwarden's ports. It is not safe for
// concurrent use; Run serialises the calls.
type Mirror struct {
	conn       *nftables.Conn
	table      *nftables.Table
	set4, set6 *nftables.Set
	ports      *nftables.Set
	closed     bool
}

// MirrorOptions configure OpenMirror.
type MirrorOptions struct {
	// Table is the table's name (default sipwarden_bans). Any table of that
	// name in the inet family is replaced: sipwarden owns it.
	Table string
	// Ports are the transport ports (UDP and TCP) whose traffic the bans drop.
	Ports []uint16
	// NetNS, when not zero, is a file descriptor of the network namespace to
	// work in (tests); zero is the process's namespace.
	NetNS int
}

// OpenMirror creates (or replaces) the table, its sets and its rules. It
// needs CAP_NET_ADMIN.
func OpenMirror(opt MirrorOptions) (*Mirror, error) {
	if opt.Table == "" {
		opt.Table = "sipwarden_bans"
	}
	if len(opt.Ports) == 0 {
		return nil, errors.New("nftables mirror: no ports to protect")
	}
	var copts []nftables.ConnOption
	if opt.NetNS != 0 {
		copts = append(copts, nftables.WithNetNSFd(opt.NetNS))
	}
	conn, err := nftables.New(append(copts, nftables.AsLasting())...)
	if err != nil {
		return nil, fmt.Errorf("nftables mirror: open netlink: %w", err)
	}
	m := &Mirror{conn: conn, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: opt.Table}}
	// Add, delete, add: replaces an old table in one transaction whether or not it exists.
	conn.AddTable(m.table)
	conn.DelTable(m.table)
	conn.AddTable(m.table)
	m.set4 = &nftables.Set{Table: m.table, Name: "banned4", KeyType: nftables.TypeIPAddr, Interval: true}
	m.set6 = &nftables.Set{Table: m.table, Name: "banned6", KeyType: nftables.TypeIP6Addr, Interval: true}
	m.ports = &nftables.Set{Table: m.table, Name: "ports", KeyType: nftables.TypeInetService}
	var portElems []nftables.SetElement
	for _, p := range opt.Ports {
		portElems = append(portElems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{m.set4, nil}, {m.set6, nil}, {m.ports, portElems}} {
		if err := conn.AddSet(s.set, s.elems); err != nil {
			conn.CloseLasting()
			return nil, fmt.Errorf("nftables mirror: set %s: %w", s.set.Name, err)
		}
	}
	policy := nftables.ChainPolicyAccept
	ch := conn.AddChain(&nftables.Chain{
		Name:     "prerouting",
		Table:    m.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRaw,
		Policy:   &policy,
	})
	for _, fam := range []struct {
		proto          byte
		offset, length uint32
		set            *nftables.Set
	}{{unix.NFPROTO_IPV4, 12, 4, m.set4}, {unix.NFPROTO_IPV6, 8, 16, m.set6}} {
		for _, l4 := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			// meta nfproto FAM meta l4proto L4 th dport @ports <ip|ip6> saddr @bannedN counter drop
			conn.AddRule(&nftables.Rule{Table: m.table, Chain: ch, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.proto}},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: m.ports.Name, SetID: m.ports.ID},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.offset, Len: fam.length},
				&expr.Lookup{SourceRegister: 1, SetName: fam.set.Name, SetID: fam.set.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	if err := conn.Flush(); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nftables mirror: create table inet %s: %w", opt.Table, err)
	}
	return m, nil
}

// Replace makes the kernel sets hold exactly the given prefixes. Up to
// chunk/2 ranges of each family are replaced in one transaction with the
// flush; longer lists follow in further transactions.
func (m *Mirror) Replace(prefixes []netip.Prefix) error {
	v4, v6 := Ranges(prefixes)
	m.conn.FlushSet(m.set4)
	m.conn.FlushSet(m.set6)
	n4, n6 := min(len(v4), chunk/2), min(len(v6), chunk/2)
	if err := m.add(m.set4, v4[:n4]); err != nil {
		return err
	}
	if err := m.add(m.set6, v6[:n6]); err != nil {
		return err
	}
	if err := m.conn.Flush(); err != nil {
		return fmt.Errorf("nftables mirror: replace bans: %w", err)
	}
	for _, rest := range []struct {
		set *nftables.Set
		rs  []Range
	}{{m.set4, v4[n4:]}, {m.set6, v6[n6:]}} {
		for len(rest.rs) > 0 {
			n := min(len(rest.rs), chunk/2)
			if err := m.add(rest.set, rest.rs[:n]); err != nil {
				return err
			}
			if err := m.conn.Flush(); err != nil {
				return fmt.Errorf("nftables mirror: add bans: %w", err)
			}
			rest.rs = rest.rs[n:]
		}
	}
	return nil
}

func (m *Mirror) add(s *nftables.Set, rs []Range) error {
	if len(rs) == 0 {
		return nil
	}
	if err := m.conn.SetAddElements(s, elements(rs)); err != nil {
		return fmt.Errorf("nftables mirror: %s: %w", s.Name, err)
	}
	return nil
}

// Close removes the table (no kernel state outlives the process) and closes
// the netlink connection.
func (m *Mirror) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	m.conn.DelTable(m.table)
	err := m.conn.Flush()
	if cerr := m.conn.CloseLasting(); err == nil {
		err = cerr
	}
	return err
}

// elements encodes ranges as interval-set elements: each range is a start
// element and an end element holding the first address after it (none when
// the range reaches the top of the address space).
func elements(rs []Range) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*len(rs))
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}
